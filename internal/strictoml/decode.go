package strictoml

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
)

type decoder struct {
	unknown []string // key paths
	lines   []int
}

func decode(root *table, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return errors.New("strictoml: Decode needs a non-nil pointer to a struct")
	}
	d := &decoder{}
	if err := d.table(root, rv.Elem()); err != nil {
		return err
	}
	if len(d.unknown) == 0 {
		return nil
	}
	if len(d.unknown) == 1 {
		return &Error{Line: d.lines[0], Msg: fmt.Sprintf("unknown keys %q", d.unknown)}
	}
	lines := make([]string, len(d.lines))
	for i, l := range d.lines {
		lines[i] = fmt.Sprint(l)
	}
	return fmt.Errorf("lines %s: unknown keys %q", strings.Join(lines, ", "), d.unknown)
}

// table decodes t into rv, a struct or a map with string keys.
func (d *decoder) table(t *table, rv reflect.Value) error {
	switch {
	case rv.Kind() == reflect.Struct:
		fields := fieldIndex(rv.Type())
		for _, k := range t.keys {
			v := t.vals[k]
			i, ok := fields[k]
			if !ok {
				d.unknown = append(d.unknown, t.path(k))
				d.lines = append(d.lines, v.line)
				continue
			}
			if err := d.value(t, k, v, rv.Field(i)); err != nil {
				return err
			}
		}
	case rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String:
		if rv.IsNil() {
			rv.Set(reflect.MakeMap(rv.Type()))
		}
		for _, k := range t.keys {
			e := reflect.New(rv.Type().Elem()).Elem()
			if err := d.value(t, k, t.vals[k], e); err != nil {
				return err
			}
			rv.SetMapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()), e)
		}
	default:
		return fmt.Errorf("strictoml: internal error: table into %s", rv.Type())
	}
	return nil
}

// value decodes v, the value of key k in t, into rv.
func (d *decoder) value(t *table, k string, v *value, rv reflect.Value) error {
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			rv.Set(reflect.New(rv.Type().Elem()))
		}
		rv = rv.Elem()
	}
	mismatch := func() error {
		return &Error{Line: v.line, Msg: fmt.Sprintf("incompatible types: %s is %s, but must be %s", t.path(k), v.kind, describe(rv.Type()))}
	}
	switch v.kind {
	case kindString:
		if rv.Kind() != reflect.String {
			return mismatch()
		}
		rv.SetString(v.str)
	case kindInt:
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		default:
			return mismatch()
		}
		if rv.OverflowInt(v.num) {
			return &Error{Line: v.line, Msg: fmt.Sprintf("%s = %d is out of range (%s)", t.path(k), v.num, rv.Type())}
		}
		rv.SetInt(v.num)
	case kindBool:
		if rv.Kind() != reflect.Bool {
			return mismatch()
		}
		rv.SetBool(v.b)
	case kindArray:
		if rv.Kind() != reflect.Slice || rv.Type().Elem().Kind() != reflect.String {
			return mismatch()
		}
		s := reflect.MakeSlice(rv.Type(), len(v.arr), len(v.arr))
		for i, e := range v.arr {
			s.Index(i).SetString(e)
		}
		rv.Set(s)
	case kindTable:
		if rv.Kind() != reflect.Struct && (rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String) {
			return mismatch()
		}
		return d.table(v.tab, rv)
	default:
		return fmt.Errorf("strictoml: internal error: value kind %d", v.kind)
	}
	return nil
}

// describe names the TOML type a Go type takes.
func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return kindString.String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kindInt.String()
	case reflect.Bool:
		return kindBool.String()
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
	case reflect.Struct, reflect.Map:
		return kindTable.String()
	}
	return fmt.Sprintf("a Go %s (not supported)", t)
}

// tagOptions is a field's `toml:"name,omitempty"` tag.
type tagOptions struct {
	name      string
	skip      bool
	omitempty bool
}

func fieldOptions(f reflect.StructField) tagOptions {
	tag := f.Tag.Get("toml")
	if tag == "-" {
		return tagOptions{skip: true}
	}
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	o := tagOptions{name: name}
	for _, opt := range strings.Split(opts, ",") {
		if opt == "omitempty" {
			o.omitempty = true
		}
	}
	return o
}

// fieldIndex maps key names to the exported fields of struct type t.
func fieldIndex(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Anonymous {
			continue
		}
		if o := fieldOptions(f); !o.skip {
			m[o.name] = i
		}
	}
	return m
}
