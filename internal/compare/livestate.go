package compare

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"slices"
)

// WriteState writes this handler's current comparison state in the
// difference log's format, for `shadowtap report -from` to merge with
// other handlers' (MergeLogs reads it as it reads a log):
//
//   - a "handler" line naming the handler and the templates it learned,
//     so that a handler that has compared nothing yet still counts as
//     merged;
//   - a "stats" line per endpoint with its cumulative state: raw counts,
//     the learners and the noise pairs, and the latency reservoirs whole
//     (the log thins them to keep its repeated lines short; here they are
//     read once, and whole reservoirs merge into the same quantiles a
//     single handler would have kept, up to the reservoir's size);
//   - a "diff" line per exchange the page shows as a finding's evidence,
//     so that the merged report has samples too.
//
// The state is rendered under the aggregate's lock (as the log's flush
// does) and written after it is released, so a slow reader never holds
// up the comparison.
func (c *Comparator) WriteState(w io.Writer) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // one line per value
	c.aggMu.Lock()
	c.agg.consolidate(c.grouper.Rename)
	now := c.cfg.Now()
	err := enc.Encode(logLine{Type: "handler", Handler: c.cfg.Handler, Time: now, Templates: c.grouper.Learned()})
	for _, name := range slices.Sorted(maps.Keys(c.agg.endpoints)) {
		if err != nil {
			break
		}
		ep := c.agg.endpoints[name]
		err = enc.Encode(logLine{Type: "stats", Handler: c.cfg.Handler, Endpoint: name, Time: now, State: ep})
		for _, cmp := range slices.Sorted(maps.Keys(ep.Comparisons)) {
			cs := ep.Comparisons[cmp]
			// An exchange with several findings is held by each of
			// them: written once (MergeLogs gives it back to each).
			var written []*Sample
			for _, k := range slices.Sorted(maps.Keys(cs.Fields)) {
				for i := range cs.Fields[k].exchanges {
					s := &cs.Fields[k].exchanges[i]
					if err != nil || slices.ContainsFunc(written, func(o *Sample) bool {
						return o.Time.Equal(s.Time) && o.Request == s.Request
					}) {
						continue
					}
					written = append(written, s)
					err = enc.Encode(logLine{Type: "diff", Handler: c.cfg.Handler, Endpoint: name, Comparison: cmp, Sample: s})
				}
			}
		}
	}
	c.aggMu.Unlock()
	if err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}
