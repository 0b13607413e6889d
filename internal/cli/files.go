package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func outputFormat(format, path string) (string, error) {
	switch format {
	case "":
		if strings.HasSuffix(path, ".gor") {
			return "goreplay", nil
		}
		return "strec", nil
	case "strec", "goreplay":
		return format, nil
	}
	return "", fmt.Errorf("-format %q: want strec or goreplay", format)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
