package redisstore

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"

	"github.com/sessionbridge/sessionbridge/bridge"
	"github.com/sessionbridge/sessionbridge/internal/gobhint"
)

// Serializer turns session values into the bytes stored in Redis and back.
// GobSerializer and JSONSerializer write exactly what boj/redistore's
// serializers of the same name write.
type Serializer interface {
	Serialize(values map[any]any) ([]byte, error)
	Deserialize(data []byte, values map[any]any) error
}

// GobSerializer stores values with encoding/gob, boj/redistore's default.
// Values of named types must be registered with gob.Register by the app.
type GobSerializer struct{}

// Serialize gob-encodes values.
func (GobSerializer) Serialize(values map[any]any) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(values); err != nil {
		return nil, gobError("encode", err, values)
	}
	return buf.Bytes(), nil
}

// Deserialize gob-decodes data into values. Bytes that encoding/gob
// cannot decode — including those that make it panic, such as a map key of
// an unhashable type, which a corrupted or hostile Redis value can hold —
// are an error, never a panic.
func (GobSerializer) Deserialize(data []byte, values map[any]any) (err error) {
	decoded := make(map[any]any)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("redisstore: gob decode session values: %v", r)
		}
	}()
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&decoded); err != nil {
		return gobError("decode", err, nil)
	}
	for k, v := range decoded {
		values[k] = v
	}
	return nil
}

// ErrUnregisteredType reports a session value whose type was not registered
// with encoding/gob. The wrapping error names the type and the missing call.
// It wraps bridge.ErrSessionUndecodable.
var ErrUnregisteredType = fmt.Errorf("redisstore: session value type not registered with encoding/gob: %w", bridge.ErrSessionUndecodable)

// gobError turns gob's "not registered" errors into one that names the type
// and the gob.Register call the app is missing (values, when encoding,
// tell a pointer type from a value type); other errors are wrapped.
func gobError(op string, err error, values map[any]any) error {
	if name, ok := gobhint.Name(err); ok {
		return fmt.Errorf("%w: %s (%v)", ErrUnregisteredType, gobhint.Message(op, gobhint.Encoded(name, values)), err)
	}
	return fmt.Errorf("redisstore: gob %s session values: %w", op, err)
}

// JSONSerializer stores values as a JSON object, like boj/redistore's
// JSONSerializer: keys must be strings, and values come back as JSON types
// (strings, float64, []any, map[string]any).
type JSONSerializer struct{}

// Serialize JSON-encodes values; a non-string key is an error.
func (JSONSerializer) Serialize(values map[any]any) ([]byte, error) {
	m := make(map[string]any, len(values))
	for k, v := range values {
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("redisstore: JSON session values need string keys, got %T", k)
		}
		m[ks] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("redisstore: JSON encode session values: %w", err)
	}
	return b, nil
}

// Deserialize JSON-decodes data into values.
func (JSONSerializer) Deserialize(data []byte, values map[any]any) error {
	m := make(map[string]any)
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("redisstore: JSON decode session values: %w", err)
	}
	for k, v := range m {
		values[k] = v
	}
	return nil
}
