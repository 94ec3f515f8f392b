"""Generated gRPC and protobuf modules (layer 0): never edit, run scripts/gen_proto.py."""
