package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/internal/decode"
	"github.com/shadowtap/shadowtap/internal/httpstream"
	"github.com/shadowtap/shadowtap/internal/pipeline"
	"github.com/shadowtap/shadowtap/internal/recording"
	"github.com/shadowtap/shadowtap/internal/source"
)

// inspect prints a summary a person can read of each file.
func inspect(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	top := fs.Int("top", 10, "paths to list")
	var keys keyFlags
	keys.registerRead(fs)
	cfg, err := loadConfig(fs, args)
	if err == nil {
		err = keys.load(&cfg)
	}
	if err != nil {
		return usageError(stderr, err)
	}
	portsGiven := false
	fs.Visit(func(f *flag.Flag) { portsGiven = portsGiven || f.Name == "filter-request-port" })
	if fs.NArg() == 0 {
		return usageError(stderr, errors.New("usage: shadowtap inspect [-filter-request-port P] [-identity FILE] FILE..."))
	}
	st := pipeline.Derive(cfg, pipeline.Inspect)
	st.Files.AllPorts = !portsGiven // every TCP connection is a candidate unless told which ports
	code := 0
	for _, path := range fs.Args() {
		if ctx.Err() != nil {
			break // interrupted: said once, for the file being read
		}
		if err := inspectFile(ctx, stdout, path, st, *top); err != nil {
			fmt.Fprintf(stderr, "inspect %s: %v\n", path, keyHint(err, st.Identities))
			// A recording without its key is bad usage, as in replay and
			// verify; an unreadable file is a failure.
			if errors.Is(err, recording.ErrEncrypted) {
				code = 2
			} else {
				code = max(code, 1)
			}
		}
	}
	return code
}

type summary struct {
	n, withResp, redacted, truncatedBody int
	methods, statuses, paths             map[string]int
	conns                                map[uint64]bool
	first, last                          int64
	latencies                            []int64
}

func inspectFile(ctx context.Context, w io.Writer, path string, st pipeline.Stages, top int) error {
	s := summary{methods: map[string]int{}, statuses: map[string]int{}, paths: map[string]int{}, conns: map[uint64]bool{}}
	kind, capSrc, err := pipeline.ReadFile(ctx, path, st, s.add)
	if err != nil {
		return err
	}
	if recording.IsEncrypted(path) {
		kind += " (encrypted)"
	}
	fmt.Fprintf(w, "%s: %s\n", path, kind)
	if capSrc != nil {
		describeCapture(w, capSrc)
	}
	s.print(w, top)
	return nil
}

func (s *summary) add(r recording.Record) {
	s.n++
	if s.n == 1 || r.Start < s.first {
		s.first = r.Start
	}
	s.last = max(s.last, r.Start)
	s.conns[r.Conn] = true
	method, target := "?", "?"
	if f := bytes.Fields(firstLine(r.Request)); len(f) >= 2 {
		method, target = string(f[0]), string(f[1])
	}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	s.methods[method]++
	s.paths[method+" "+target]++
	if r.HasResponse {
		s.withResp++
		s.statuses[fmt.Sprint(r.Status)]++
		if lat := r.Latency(); lat >= 0 && r.RespStart > 0 {
			s.latencies = append(s.latencies, lat)
		}
	}
	if r.Redacted {
		s.redacted++
	}
	if r.BodyTruncated {
		s.truncatedBody++
	}
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

func (s *summary) print(w io.Writer, top int) {
	span := time.Duration(s.last - s.first)
	fmt.Fprintf(w, "  requests     %d on %d connections over %s\n", s.n, len(s.conns), span.Round(time.Millisecond))
	fmt.Fprintf(w, "  methods      %s\n", counts(s.methods, 0))
	fmt.Fprintf(w, "  responses    %d seen (status %s), %d not seen\n", s.withResp, counts(s.statuses, 0), s.n-s.withResp)
	if len(s.latencies) > 0 {
		slices.Sort(s.latencies)
		q := func(p float64) time.Duration {
			return time.Duration(s.latencies[int(p*float64(len(s.latencies)-1))]).Round(time.Microsecond)
		}
		fmt.Fprintf(w, "  production latency p50 %s, p95 %s, p99 %s\n", q(.5), q(.95), q(.99))
	}
	if s.redacted > 0 || s.truncatedBody > 0 {
		fmt.Fprintf(w, "  records      %d with credentials redacted, %d with a response body cut at the size kept\n", s.redacted, s.truncatedBody)
	}
	if len(s.paths) > 0 {
		fmt.Fprintf(w, "  top paths\n")
		for _, kv := range sorted(s.paths, top) {
			fmt.Fprintf(w, "    %7d  %s\n", kv.n, kv.k)
		}
	}
}

func describeCapture(w io.Writer, c *source.CaptureSource) {
	st, e := c.File, &c.Engine
	plain := st.Packets - st.VXLAN - st.Geneve - st.Skipped
	fmt.Fprintf(w, "  packets      %d (VXLAN %d, Geneve %d, not encapsulated %d, unreadable link layer %d)\n",
		st.Packets, st.VXLAN, st.Geneve, plain, st.Skipped)
	if len(c.VNIs) > 0 {
		vnis := map[string]int{}
		for v, n := range c.VNIs {
			vnis[fmt.Sprint(v)] = n
		}
		fmt.Fprintf(w, "  VNIs         %s\n", counts(vnis, 0))
	}
	dropped := map[string]int{}
	for r := decode.Reason(1); r < decode.NumReasons; r++ {
		if n := e.Decode[r].Load(); n > 0 {
			dropped[r.String()] = int(n)
		}
	}
	if len(dropped) > 0 {
		fmt.Fprintf(w, "  not decoded  %s\n", counts(dropped, 0))
	}
	ra := &e.Reassembly
	fmt.Fprintf(w, "  flows        %d (closed %d, reset %d, idle %d, open at the end %d)\n", ra.FlowsOpened.Load(),
		ra.FlowsEnded[0].Load(), ra.FlowsEnded[1].Load(), ra.FlowsEnded[2].Load(), ra.FlowsEnded[3].Load())
	fmt.Fprintf(w, "  tcp          gaps %d (%d bytes), truncated segments %d, out of order %d, duplicates %d, picked up mid-stream %d\n",
		ra.Gaps.Load(), ra.GapBytes.Load(), ra.TruncatedSegs.Load(), ra.OutOfOrderSegs.Load(), ra.DuplicateSegs.Load(), ra.MidstreamPickups.Load())
	h := &e.HTTP
	notHTTP := map[string]int{}
	for k := range httpstream.NumStops {
		if n := h.Stopped[k].Load(); n > 0 {
			notHTTP[k.String()] = int(n)
		}
	}
	rejected := map[string]int{}
	for r := range httpstream.NumRejects {
		if n := h.Rejected[r].Load(); n > 0 {
			rejected[r.String()] = int(n)
		}
	}
	fmt.Fprintf(w, "  not replayed lost to gaps %d, cut short %d, too large %d, rejected %s, other protocols %s\n",
		h.LostToGap.Load(), h.Incomplete.Load(), h.TooLarge.Load(), counts(rejected, 0), counts(notHTTP, 0))
}

type kv struct {
	k string
	n int
}

func sorted(m map[string]int, limit int) []kv {
	out := make([]kv, 0, len(m))
	for k, n := range m {
		out = append(out, kv{k, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n > out[j].n || out[i].n == out[j].n && out[i].k < out[j].k })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

func counts(m map[string]int, limit int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, e := range sorted(m, limit) {
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.n))
	}
	return strings.Join(parts, ", ")
}
