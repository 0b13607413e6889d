package config

import (
	"reflect"
	"strings"
)

// nested are the sections whose settings Changed names one by one
// (compare.log, correlate.store); any other section is one setting
// (defaults, targets).
var nested = map[string]bool{"compare": true, "correlate": true}

// Changed names the settings that differ between a and b, as the file
// spells them: "listen", "drain_timeout", "compare.min_samples",
// "targets". It is read from the type itself, so a setting added later is
// never missed; the commands' own keys (yaml "-") are not settings.
func Changed(a, b Config) []string {
	return changed("", reflect.ValueOf(a), reflect.ValueOf(b), true)
}

func changed(prefix string, a, b reflect.Value, top bool) []string {
	var out []string
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, ok := yamlName(f)
		if !ok {
			continue
		}
		x, y := a.Field(i), b.Field(i)
		if top && nested[name] && f.Type.Kind() == reflect.Struct {
			out = append(out, changed(prefix+name+".", x, y, false)...)
			continue
		}
		if !reflect.DeepEqual(x.Interface(), y.Interface()) {
			out = append(out, prefix+name)
		}
	}
	return out
}

// yamlName is the key a field has in the file, as yaml.v3 maps it (the
// tag's name, or the lowercased field name); false for a field that is no
// key (unexported, or tagged "-").
func yamlName(f reflect.StructField) (string, bool) {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return "", false
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, true
}
