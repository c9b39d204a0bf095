package swrk

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// unknownFields names the fields of the encoded message b, of Go type t
// (a generated rpc struct), that t does not define: options of a newer
// CRIU, which the decoder keeps out of sight and amber would otherwise
// ignore without a word. Fields of nested messages are named by their
// path ("opts.200").
func unknownFields(b []byte, t reflect.Type, prefix string) []string {
	known := fieldsByNumber(t)
	var out []string
	for len(b) > 0 {
		num, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 {
			return append(out, prefix+"(undecodable)")
		}
		n := protowire.ConsumeFieldValue(num, typ, b[tagLen:])
		if n < 0 {
			return append(out, prefix+"(undecodable)")
		}
		val := b[tagLen : tagLen+n]
		b = b[tagLen+n:]
		f, ok := known[num]
		if !ok {
			out = append(out, prefix+strconv.Itoa(int(num)))
			continue
		}
		if mt := messageType(f.Type); mt != nil && typ == protowire.BytesType {
			inner, _ := protowire.ConsumeBytes(val)
			out = append(out, unknownFields(inner, mt, prefix+protoName(f)+".")...)
		}
	}
	return out
}

// fieldsByNumber maps the field numbers of a generated struct to its
// fields, from their `protobuf:"kind,NUMBER,..."` tags.
func fieldsByNumber(t reflect.Type) map[protowire.Number]reflect.StructField {
	m := map[protowire.Number]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		parts := strings.Split(f.Tag.Get("protobuf"), ",")
		if len(parts) < 2 {
			continue
		}
		if n, err := strconv.Atoi(parts[1]); err == nil {
			m[protowire.Number(n)] = f
		}
	}
	return m
}

// messageType is the struct type of a message field (*T or []*T), or nil.
func messageType(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		return t.Elem()
	}
	return nil
}

// protoName is a field's name in the .proto file.
func protoName(f reflect.StructField) string {
	for _, p := range strings.Split(f.Tag.Get("protobuf"), ",") {
		if name, ok := strings.CutPrefix(p, "name="); ok {
			return name
		}
	}
	return f.Name
}

// describeUnknown is the error text for unknown fields.
func describeUnknown(fields []string) string {
	return fmt.Sprintf("field %s: unknown option (not in the CRIU RPC protocol amber speaks, go-criu v8.3.0's rpc.proto)",
		strings.Join(fields, ", "))
}
