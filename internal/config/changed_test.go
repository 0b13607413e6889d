package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestChangedNamesEverySetting changes each setting of the configuration
// once, found by walking the type (a setting added later is covered), and
// Changed must name exactly that one.
func TestChangedNamesEverySetting(t *testing.T) {
	base := Default()
	n := 0
	var walk func(path string, v reflect.Value, top bool)
	walk = func(path string, v reflect.Value, top bool) {
		ty := v.Type()
		for i := range ty.NumField() {
			name, ok := yamlName(ty.Field(i))
			if !ok {
				continue
			}
			if top && nested[name] {
				walk(path+name+".", v.Field(i), false)
				continue
			}
			next := Default()
			field := reflect.ValueOf(&next).Elem()
			for _, p := range strings.Split(strings.TrimSuffix(path, "."), ".") {
				if p != "" {
					field = fieldByTag(field, p)
				}
			}
			field = field.Field(i)
			if !mutate(field) {
				t.Errorf("%s%s: a %s the test cannot change", path, name, field.Type())
				continue
			}
			n++
			if got := Changed(base, next); !slices.Equal(got, []string{path + name}) {
				t.Errorf("%s%s changed: Changed says %q", path, name, got)
			}
		}
	}
	walk("", reflect.ValueOf(base), true)
	if got := Changed(base, Default()); len(got) != 0 {
		t.Errorf("nothing changed: %q", got)
	}
	t.Logf("%d settings changed one at a time", n)
	if n < 40 {
		t.Errorf("only %d settings walked", n)
	}
}

func fieldByTag(v reflect.Value, name string) reflect.Value {
	for i := range v.NumField() {
		if tag, ok := yamlName(v.Type().Field(i)); ok && tag == name {
			return v.Field(i)
		}
	}
	panic("no field " + name)
}

// mutate sets v to a value other than the one it has.
func mutate(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.Type() == reflect.TypeFor[time.Duration]() {
			v.SetInt(v.Int() + int64(time.Second))
		} else {
			v.SetInt(v.Int() + 1)
		}
	case reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float64:
		v.SetFloat(v.Float() + 0.5)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, k := range v.MapKeys() {
			m.SetMapIndex(k, v.MapIndex(k))
		}
		k := reflect.New(v.Type().Key()).Elem()
		if k.Kind() == reflect.String {
			k.SetString("mutated")
		}
		m.SetMapIndex(k, reflect.New(v.Type().Elem()).Elem())
		v.Set(m)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		} else {
			v.Set(reflect.Zero(v.Type()))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && mutate(v.Field(i)) {
				return true
			}
		}
		return false
	default:
		return false
	}
	return true
}
