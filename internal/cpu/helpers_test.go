package cpu

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// requiredFields lists the proto2 required fields of m's message type.
func requiredFields(m proto.Message) []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); fd.Cardinality() == protoreflect.Required {
			out = append(out, fd)
		}
	}
	return out
}

// without returns a copy of m with field fd cleared.
func without[M proto.Message](m M, fd protoreflect.FieldDescriptor) M {
	c := proto.Clone(m).(M)
	c.ProtoReflect().Clear(fd)
	return c
}

// reparse marshals m and parses it back into a fresh message, as writing
// and reading an image would; Marshal fails if a required field is unset.
func reparse[M proto.Message](m M, fresh M) (M, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return fresh, err
	}
	return fresh, proto.Unmarshal(b, fresh)
}
