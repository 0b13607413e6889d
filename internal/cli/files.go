package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/shadowtap/shadowtap/internal/goreplay"
	"github.com/shadowtap/shadowtap/internal/recording"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// recordWriter is where record writes exchanges.
type recordWriter interface {
	Write(recording.Record) error
	Close() error
}

// goReplayWriter writes exchanges as GoReplay payloads: the request, and
// production's response when known.
type goReplayWriter struct {
	f      *os.File
	w      *goreplay.Writer
	redact []string
}

func createGoReplay(path string, redact []string) (*goReplayWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &goReplayWriter{f: f, w: goreplay.NewWriter(f), redact: redact}, nil
}

func (g *goReplayWriter) Write(r recording.Record) error {
	if len(g.redact) > 0 {
		r = recording.Redact(r, g.redact)
	}
	id := goreplay.ID(r.Conn, r.Index)
	if err := g.w.Write(goreplay.Payload{Kind: goreplay.Request, ID: id, Time: r.Start, Latency: 0, Data: r.Request}); err != nil {
		return err
	}
	if r.HasResponse {
		return g.w.Write(goreplay.Payload{Kind: goreplay.Response, ID: id, Time: r.RespStart, Latency: r.Latency(), Data: r.Response})
	}
	return nil
}

func (g *goReplayWriter) Close() error {
	if err := g.w.Flush(); err != nil {
		g.f.Close()
		return err
	}
	return g.f.Close()
}

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
