package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"version"}, 0, "shadowtap dev"},
		{[]string{"-percentage", "50"}, 2, "no target: set -destination"},
		{[]string{"-destination", "http://x", "-percentage", "150"}, 2, "not between 0 and 100"},
		{[]string{"-no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"-config", "../../internal/config/testdata/bad/unknown-key.yaml"}, 2, "line 4: field retries not found"},
		{[]string{"validate-config", "../../internal/config/testdata/good/full.yaml"}, 0, `target "candidate" receives POST, PUT, PATCH`},
		{[]string{"validate-config", "../../internal/config/testdata/bad/duplicate-name.yaml"}, 1, `target "a": name used twice`},
		{[]string{"validate-config", "../../internal/config/testdata/good/fleet.yaml"}, 0, "correlate.store is set without SHADOWTAP_CORRELATE_KEY"},
		{[]string{"validate-config", "../../internal/config/testdata/bad/store-scheme.yaml"}, 1, `line 4: correlate.store "ftp://x": unknown scheme "ftp"`},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		if code := Main("dev", tt.args, &out, &errOut); code != tt.code {
			t.Errorf("%v: exit %d, want %d", tt.args, code, tt.code)
		}
		if !strings.Contains(out.String()+errOut.String(), tt.out) {
			t.Errorf("%v: output %q lacks %q", tt.args, out.String()+errOut.String(), tt.out)
		}
	}
}
