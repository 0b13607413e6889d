package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shadowtap/shadowtap/internal/config"
	"github.com/shadowtap/shadowtap/internal/goreplay"
	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/source"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// sourceOptions derives how capture files are read from the configuration.
func sourceOptions(cfg config.Config, pair bool) source.Options {
	return source.Options{Ports: cfg.Ports, VNIs: cfg.VNIs, MaxBody: cfg.MaxBody, ExtraMethods: cfg.ExtraMethods,
		MaxFlows: cfg.MaxFlows, ReorderWait: cfg.ReorderWait, PairResponses: pair, Dedup: cfg.Dedup}
}

// multiSource reads several files one after another.
type multiSource struct {
	paths []string
	opts  source.Options
	cur   source.Source
}

func openAll(paths []string, opts source.Options) func() (source.Source, error) {
	return func() (source.Source, error) {
		if len(paths) == 0 {
			return nil, errors.New("no input files")
		}
		return &multiSource{paths: paths, opts: opts}, nil
	}
}

func (m *multiSource) Next() (recording.Record, error) {
	for {
		if m.cur == nil {
			if len(m.paths) == 0 {
				return recording.Record{}, io.EOF
			}
			s, _, err := source.Open(m.paths[0], m.opts)
			if err != nil {
				return recording.Record{}, err
			}
			m.cur, m.paths = s, m.paths[1:]
		}
		r, err := m.cur.Next()
		if errors.Is(err, io.EOF) {
			m.cur.Close()
			m.cur = nil
			continue
		}
		return r, err
	}
}

func (m *multiSource) Close() error {
	if m.cur != nil {
		return m.cur.Close()
	}
	return nil
}

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
