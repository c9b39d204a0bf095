package image

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Warm prepares the encoders and decoders of every message type linked
// into the program. The protobuf runtime builds a type's coders, and its
// file's descriptors, on the type's first use: 8–20 ms for the images of
// one process here, paid by the first dump or restore of a process. A
// long-lived amber whose next dump or restore is timed (migrate, receive:
// the tree is frozen meanwhile) pays it ahead instead, once.
func Warm() {
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		// An empty message decodes from nothing; the error of a type with
		// required fields is of no interest, its coders are built.
		_ = proto.Unmarshal(nil, mt.New().Interface())
		_, _ = proto.Marshal(mt.New().Interface())
		return true
	})
}
