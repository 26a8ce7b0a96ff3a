"""The built-in demo (tools/demo.sh): a drawn ImageNet-shaped corpus, and the report the demo ends with."""
