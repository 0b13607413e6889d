// Package glob is the one pattern syntax of the configuration's field and
// endpoint names (compare.ignore, compare.always, compare.mask, the gate's
// allowances): "*" matches any run of characters, "/" and "." included,
// and every other character itself.
package glob

import (
	"regexp"
	"strings"
)

// Compile returns pattern's matcher; an empty pattern matches everything.
func Compile(pattern string) *regexp.Regexp {
	if pattern == "" {
		pattern = "*"
	}
	parts := strings.Split(pattern, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}
