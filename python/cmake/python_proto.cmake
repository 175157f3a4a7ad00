# python_proto.cmake: prepares proto/caffe.proto for protoc --python_out (cmake -P, at build
# time). netrun's schema names Caffe's field `base` as `base_` (protobuf-c reserves `base`,
# see the header of proto/caffe.proto); Python's text_format and NetSpec must see Caffe's
# name, so every field name with a trailing underscore loses it (same number, same wire).
#   -DIN=proto/caffe.proto -DOUT=<dir>/caffe.proto -DINIT=<stage>/caffe/proto/__init__.py
file(READ "${IN}" text)
string(REGEX REPLACE "((optional|required|repeated) [A-Za-z0-9_.]+ [A-Za-z0-9_]+)_ = "
       "\\1 = " text "${text}")
file(WRITE "${OUT}" "${text}")
file(WRITE "${INIT}" "\"\"\"caffe.proto: caffe_pb2, generated at build time by protoc from netrun's proto/caffe.proto.\"\"\"\n")
