"""TF Serving's BatchingParameters message, for parsing the exporter's batching file.

The pip package tensorflow-serving-api ships the request and config protos but not
`tensorflow_serving/servables/tensorflow/session_bundle_config_pb2`. Where it is missing, the
message is rebuilt here with the same package, names, field numbers and types as
session_bundle_config.proto (tensorflow/serving), so text the server would reject (an unknown
field, a wrong type) is rejected here too.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_FIELDS = (  # (name, number, type, label, wrapper message or None)
    ("max_batch_size", 1, "TYPE_MESSAGE", "LABEL_OPTIONAL", ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, "TYPE_MESSAGE", "LABEL_OPTIONAL", ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, "TYPE_MESSAGE", "LABEL_OPTIONAL", ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, "TYPE_MESSAGE", "LABEL_OPTIONAL", ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, "TYPE_MESSAGE", "LABEL_OPTIONAL", ".google.protobuf.StringValue"),
    ("allowed_batch_sizes", 6, "TYPE_INT64", "LABEL_REPEATED", None),
    ("pad_variable_length_inputs", 7, "TYPE_BOOL", "LABEL_OPTIONAL", None),
)


def batching_parameters_class():
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2
    except ImportError:
        pass
    else:
        return session_bundle_config_pb2.BatchingParameters
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = file.message_type.add(name="BatchingParameters")
    for name, number, kind, label, type_name in _FIELDS:
        field = message.field.add(
            name=name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.Type.Value(kind),
            label=descriptor_pb2.FieldDescriptorProto.Label.Value(label),
        )
        if type_name:
            field.type_name = type_name
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
