package sessions

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed instancetypes.yaml
var embeddedTypes []byte

// InstanceTypes is AWS's documented list of which instance types can be
// traffic mirror sources, with where and when it was read.
type InstanceTypes struct {
	Source           string   `yaml:"source"`
	Date             string   `yaml:"date"`
	NitroUnsupported []string `yaml:"nitro_unsupported"`
	XenSupported     []string `yaml:"xen_supported"`
	Xen              []string `yaml:"xen"`
	newest           int      // highest generation named in NitroUnsupported
}

// DefaultInstanceTypes returns the list built into shadowtap.
func DefaultInstanceTypes() *InstanceTypes {
	t, err := parseInstanceTypes(embeddedTypes)
	if err != nil {
		panic("sessions: embedded instancetypes.yaml: " + err.Error()) // a build defect, caught by the tests
	}
	return t
}

// LoadInstanceTypes reads a file shaped like the embedded list, to use
// when AWS has changed its list before shadowtap has.
func LoadInstanceTypes(path string) (*InstanceTypes, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	t, err := parseInstanceTypes(b)
	if err != nil {
		return nil, fmt.Errorf("sessions: %s: %w", path, err)
	}
	return t, nil
}

func parseInstanceTypes(b []byte) (*InstanceTypes, error) {
	var t InstanceTypes
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key would otherwise empty a list silently
	if err := dec.Decode(&t); err != nil {
		return nil, err
	}
	if t.Date == "" || len(t.NitroUnsupported) == 0 {
		return nil, errors.New("instance type list needs a date and nitro_unsupported")
	}
	for _, l := range [][]string{t.NitroUnsupported, t.XenSupported, t.Xen} {
		for i := range l {
			l[i] = strings.ToLower(l[i])
		}
	}
	for _, f := range t.NitroUnsupported {
		t.newest = max(t.newest, generation(f))
	}
	return &t, nil
}

// family returns the part of an instance type before the size: "m7i-flex"
// for "m7i-flex.large".
func family(itype string) string {
	f, _, _ := strings.Cut(strings.ToLower(itype), ".")
	return f
}

// generation is the first number in a family name: 7 for "m7i-flex", 6
// for "hpc6a", 0 when there is none.
func generation(fam string) int {
	n, seen := 0, false
	for _, c := range fam {
		switch {
		case c >= '0' && c <= '9':
			n, seen = n*10+int(c-'0'), true
		case seen:
			return n
		}
	}
	return n
}

// Judge says whether itype can be a traffic mirror source.
func (t *InstanceTypes) Judge(itype string) (Level, string) {
	fam := family(itype)
	_, size, _ := strings.Cut(strings.ToLower(itype), ".")
	asOf := fmt.Sprintf("AWS's list of %s", t.Date)
	switch {
	case strings.HasPrefix(size, "metal"):
		return Fail, fmt.Sprintf("%s is bare metal, which cannot be a mirror source (%s)", itype, asOf)
	case slices.Contains(t.NitroUnsupported, fam):
		return Fail, fmt.Sprintf("%s: family %s cannot be a mirror source (%s)", itype, fam, asOf)
	case slices.Contains(t.XenSupported, fam):
		return OK, fmt.Sprintf("%s: one of the Xen families that can be mirror sources (%s)", itype, asOf)
	case slices.Contains(t.Xen, fam):
		return Fail, fmt.Sprintf("%s: a Xen family that cannot be a mirror source (%s)", itype, asOf)
	case generation(fam) >= t.newest:
		// AWS keeps adding the newest families to its exceptions; one it has
		// not named yet may simply be newer than the page.
		return Warn, fmt.Sprintf("%s: not on %s, but as new as the newest families it excludes", itype, asOf)
	}
	return OK, fmt.Sprintf("%s: a Nitro type not excluded by %s", itype, asOf)
}
