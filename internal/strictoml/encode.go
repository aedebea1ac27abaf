package strictoml

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Encode writes v, a struct or a pointer to one, as TOML to w: the keys
// of the root table, then each table as a [table] section, with the
// layout github.com/BurntSushi/toml's encoder uses (two-space indent in
// tables, map keys sorted), so that existing files do not change. Fields
// tagged omitempty are left out when they are empty in BurntSushi's sense
// (empty string, slice or map; false; nil pointer; zero comparable
// struct); integers are always written. Nil pointers, maps and slices are
// left out. Tables are one level deep, as for Decode.
func Encode(w io.Writer, v any) error {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return fmt.Errorf("strictoml: Encode needs a struct, not %s", rv.Type())
	}
	e := &encoder{}
	if err := e.table(rv, "", 0); err != nil {
		return err
	}
	_, err := w.Write(e.b.Bytes())
	return err
}

type encoder struct {
	b bytes.Buffer
}

type item struct {
	key string
	v   reflect.Value
}

// table writes the keys of rv (struct or map) and then, at depth 0, its
// tables.
func (e *encoder) table(rv reflect.Value, indent string, depth int) error {
	var direct, sub []item
	add := func(k string, v reflect.Value) {
		for v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		switch v.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			if v.IsNil() {
				return
			}
		}
		if v.Kind() == reflect.Struct || v.Kind() == reflect.Map {
			sub = append(sub, item{k, v})
		} else {
			direct = append(direct, item{k, v})
		}
	}
	switch rv.Kind() {
	case reflect.Struct:
		for i := range rv.NumField() {
			f := rv.Type().Field(i)
			if !f.IsExported() || f.Anonymous {
				continue
			}
			o := fieldOptions(f)
			if o.skip || o.omitempty && isEmpty(rv.Field(i)) {
				continue
			}
			add(o.name, rv.Field(i))
		}
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("strictoml: cannot encode %s: map keys must be strings", rv.Type())
		}
		keys := rv.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			add(k.String(), rv.MapIndex(k))
		}
	}
	for _, it := range direct {
		if !utf8.ValidString(it.key) {
			return fmt.Errorf("strictoml: cannot encode key %q: not valid UTF-8", it.key)
		}
		e.b.WriteString(indent + quoteKey(it.key) + " = ")
		if err := e.element(it.v); err != nil {
			return fmt.Errorf("strictoml: cannot encode %s: %w", it.key, err)
		}
		e.b.WriteString("\n")
	}
	if len(sub) > 0 && depth > 0 {
		return fmt.Errorf("strictoml: cannot encode %s: tables are one level deep", sub[0].key)
	}
	for _, it := range sub {
		if !utf8.ValidString(it.key) {
			return fmt.Errorf("strictoml: cannot encode table %q: not valid UTF-8", it.key)
		}
		if e.b.Len() > 0 {
			e.b.WriteString("\n")
		}
		e.b.WriteString("[" + quoteKey(it.key) + "]\n")
		if err := e.table(it.v, "  ", depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) element(v reflect.Value) error {
	switch v.Kind() {
	case reflect.String:
		if !utf8.ValidString(v.String()) {
			return fmt.Errorf("string %q is not valid UTF-8", v.String())
		}
		e.b.WriteString(quoteString(v.String()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Bool:
		e.b.WriteString(strconv.FormatBool(v.Bool()))
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("%s is not supported", v.Type())
		}
		e.b.WriteString("[")
		for i := range v.Len() {
			if i > 0 {
				e.b.WriteString(", ")
			}
			if err := e.element(v.Index(i)); err != nil {
				return err
			}
		}
		e.b.WriteString("]")
	default:
		return fmt.Errorf("%s is not supported", v.Type())
	}
	return nil
}

// isEmpty is BurntSushi/toml's omitempty test (v1.6.0 encode.go isEmpty).
func isEmpty(rv reflect.Value) bool {
	switch rv.Kind() {
	case reflect.Array, reflect.Slice, reflect.Map, reflect.String:
		return rv.Len() == 0
	case reflect.Struct:
		if rv.Type().Comparable() {
			return rv.IsZero()
		}
		for i := range rv.NumField() {
			if !isEmpty(rv.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Pointer:
		return rv.IsNil()
	}
	return false
}

// quoteString writes s as a basic string, escaping what TOML requires.
func quoteString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// quoteKey writes a key bare when it can be, quoted otherwise.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		if !isBare(k[i]) {
			return quoteString(k)
		}
	}
	return k
}
