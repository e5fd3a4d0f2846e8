// Package gobhint turns encoding/gob's errors about a type that was not
// registered into the gob.Register call the app is missing, for
// bridge.StoreSource (errors of any gorilla store) and bridge/redisstore's
// serializers alike.
package gobhint

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"
)

// The texts of encoding/gob's errors: decoding names the type as
// gob.Register named it, quoted ("github.com/acme/app/models.User", or
// "*models.User" for a pointer); encoding names it by its reflect name,
// without the pointer ("models.User").
const (
	decodeMarker = "name not registered for interface: "
	encodeMarker = "type not registered for interface: "
)

// Name returns the name of the type that err (or an error it was written
// from: a store may wrap gob's error in its own text) says was not
// registered with encoding/gob, and whether err says so.
func Name(err error) (string, bool) {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, decodeMarker); ok {
		q, qerr := strconv.QuotedPrefix(rest)
		if qerr != nil {
			return "", false
		}
		name, _ := strconv.Unquote(q)
		return name, name != ""
	}
	if _, rest, ok := strings.Cut(msg, encodeMarker); ok {
		return rest, rest != ""
	}
	return "", false
}

// IsGob reports whether err is (or was written from) an error of
// encoding/gob: data that no retry will decode.
func IsGob(err error) bool { return strings.Contains(err.Error(), "gob: ") }

// Encoded returns the name an encode error gave (the reflect name of the
// type, without pointer) as a decode error would, "*" first when values
// holds the type as a pointer.
func Encoded(name string, values map[any]any) string {
	for _, v := range values {
		if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer && t.Elem().String() == name {
			return "*" + name
		}
	}
	return name
}

// Message says the call that fixes it and what failed, for the type gob
// names name: the call first, so that a log that caps errors keeps it.
func Message(op, name string) string {
	return fmt.Sprintf("call %s at start-up, before sessions are read or written (%s of type %s failed)", Call(name), op, name)
}

// Call returns the Go call that registers the type gob names name, as
// gob.Register names it ("import/path.Type", "*pkg.Type" for a pointer):
// gob.Register(&models.User{}) for "*models.User",
// gob.Register(models.User{}) for "github.com/acme/app/models.User",
// gob.Register(User{}) in package main.
// A name gob.Register does not write (one given to gob.RegisterName) gets
// a gob.RegisterName call under that name.
func Call(name string) string {
	bare, ptr := strings.CutPrefix(name, "*")
	path, typ, ok := cutLast(bare, ".")
	pkg := path
	if elems := strings.Split(path, "/"); len(elems) > 1 {
		pkg = elems[len(elems)-1]
		if majorVersion(pkg) { // github.com/acme/models/v2: package models
			pkg = elems[len(elems)-2]
		}
	}
	if !ok || !identifier(pkg) || !identifier(typ) {
		return fmt.Sprintf("gob.RegisterName(%q, <a value of the type>)", name)
	}
	v := pkg + "." + typ + "{}"
	if pkg == "main" {
		v = typ + "{}"
	}
	if ptr {
		v = "&" + v
	}
	return "gob.Register(" + v + ")"
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

func majorVersion(s string) bool {
	n, ok := strings.CutPrefix(s, "v")
	_, err := strconv.Atoi(n)
	return ok && err == nil
}

func identifier(s string) bool {
	for i, r := range s {
		if r != '_' && !unicode.IsLetter(r) && (i == 0 || !unicode.IsDigit(r)) {
			return false
		}
	}
	return s != ""
}
