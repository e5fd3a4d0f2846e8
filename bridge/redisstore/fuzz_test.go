package redisstore_test

import (
	"bytes"
	"encoding/gob"
	"errors"
	"testing"

	"github.com/sessionbridge/sessionbridge/bridge/redisstore"
)

// FuzzSessionValues feeds arbitrary bytes to both serializers, as a
// corrupted or hostile Redis value would: they must return an error or
// values, never panic; gob errors about types must name the call that
// registers the type (gob.Register or gob.RegisterName); values that
// decode re-encode and decode to the same keys.
func FuzzSessionValues(f *testing.F) {
	good, _ := redisstore.GobSerializer{}.Serialize(map[any]any{"user_id": "1", "username": "alice", "roles": []string{"user"}})
	f.Add(good)
	f.Add([]byte(`{"user_id":"1","roles":["user","admin"]}`))
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x02"))
	// A value of a type the reader never registered: encode under a
	// registered name, then swap in a same-length name nobody registered.
	gob.RegisterName("sessionbridge.fuzz.known", fuzzType{})
	var unknown bytes.Buffer
	_ = gob.NewEncoder(&unknown).Encode(map[any]any{"x": fuzzType{A: 1}})
	f.Add(bytes.Replace(unknown.Bytes(), []byte("sessionbridge.fuzz.known"), []byte("sessionbridge.fuzz.other"), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, s := range []redisstore.Serializer{redisstore.GobSerializer{}, redisstore.JSONSerializer{}} {
			values := map[any]any{}
			err := s.Deserialize(data, values)
			if err != nil {
				if errors.Is(err, redisstore.ErrUnregisteredType) && !bytes.Contains([]byte(err.Error()), []byte("gob.Register")) {
					t.Fatalf("%T: unregistered-type error without the gob.Register call: %v", s, err)
				}
				continue
			}
			again, err := s.Serialize(values)
			if err != nil {
				continue // e.g. JSON numbers that gob decoded into types JSON cannot hold
			}
			round := map[any]any{}
			if err := s.Deserialize(again, round); err != nil {
				t.Fatalf("%T: re-encoded values do not decode: %v", s, err)
			}
			if len(round) != len(values) {
				t.Fatalf("%T: %d keys after a round trip, want %d", s, len(round), len(values))
			}
		}
	})
}

type fuzzType struct{ A int }
