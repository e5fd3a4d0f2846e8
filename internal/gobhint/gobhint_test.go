package gobhint_test

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"testing"

	"github.com/sessionbridge/sessionbridge/internal/gobhint"
)

func TestCall(t *testing.T) {
	tests := []struct{ name, want string }{
		{"*github.com/acme/app/models.User", "gob.Register(&models.User{})"},
		{"github.com/acme/app/models.User", "gob.Register(models.User{})"},
		{"models.User", "gob.Register(models.User{})"}, // as an encode error names it
		{"*models.User", "gob.Register(&models.User{})"},
		{"github.com/acme/models/v2.User", "gob.Register(models.User{})"},
		{"*main.User", "gob.Register(&User{})"},
		{"main.User", "gob.Register(User{})"},
		{"app_models.User_2", "gob.Register(app_models.User_2{})"},
		// Names gob.Register does not write: the name is all there is.
		{"sessionbridge.test.unknowntyp", `gob.RegisterName("sessionbridge.test.unknowntyp", <a value of the type>)`},
		{"gopkg.in/yaml.v3.Node", `gob.RegisterName("gopkg.in/yaml.v3.Node", <a value of the type>)`},
		{"User", `gob.RegisterName("User", <a value of the type>)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gobhint.Call(tt.name); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

type hintUserA struct{ ID string }

type hintCartA struct{ Items []string }

type unregisteredUser struct{ ID string }

// TestName: the names in encoding/gob's own errors, wrapped as a store
// would, give the call that fixes them: a pointer type its &T{}.
func TestName(t *testing.T) {
	gob.Register(&hintUserA{})
	gob.Register(hintCartA{})
	// decodeErr encodes v, registered, then renames its type in the bytes
	// to a name of the same length nobody registered, and decodes.
	decodeErr := func(v any, from, to string) error {
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(map[any]any{"v": v}); err != nil {
			t.Fatal(err)
		}
		data := bytes.ReplaceAll(buf.Bytes(), []byte(from), []byte(to))
		return gob.NewDecoder(bytes.NewReader(data)).Decode(new(map[any]any))
	}
	const pkg = "github.com/sessionbridge/sessionbridge/internal/gobhint_test"
	values := map[any]any{"user": &unregisteredUser{}}
	encodeErr := gob.NewEncoder(new(bytes.Buffer)).Encode(values)

	tests := []struct {
		name     string
		err      error
		wantName string
		wantCall string
	}{
		// gob.Register names a pointer type by its package's name, a value
		// type by its import path.
		{"decode pointer", decodeErr(&hintUserA{}, "hintUserA", "hintUserZ"), "*gobhint_test.hintUserZ", "gob.Register(&gobhint_test.hintUserZ{})"},
		{"decode value", decodeErr(hintCartA{}, "hintCartA", "hintCartZ"), pkg + ".hintCartZ", "gob.Register(gobhint_test.hintCartZ{})"},
		{"decode, wrapped by a store", fmt.Errorf("securecookie: error - caused by: %w (and 1 other error)", decodeErr(&hintUserA{}, "hintUserA", "hintUserZ")),
			"*gobhint_test.hintUserZ", "gob.Register(&gobhint_test.hintUserZ{})"},
		{"encode pointer", encodeErr, "*gobhint_test.unregisteredUser", "gob.Register(&gobhint_test.unregisteredUser{})"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil || !gobhint.IsGob(tt.err) {
				t.Fatalf("got error %v, want one of encoding/gob", tt.err)
			}
			name, ok := gobhint.Name(tt.err)
			if !ok {
				t.Fatalf("Name(%v): not an unregistered type", tt.err)
			}
			name = gobhint.Encoded(name, values)
			if name != tt.wantName {
				t.Errorf("name: got %q, want %q", name, tt.wantName)
			}
			if got := gobhint.Call(name); got != tt.wantCall {
				t.Errorf("call: got %s, want %s", got, tt.wantCall)
			}
		})
	}
	if _, ok := gobhint.Name(errors.New("gob: unexpected EOF")); ok {
		t.Error("Name of another gob error: got ok, want not")
	}
}
