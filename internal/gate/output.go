package gate

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/shadowtap/shadowtap/internal/compare"
)

// JUnit XML. The layout follows the schema Jenkins' JUnit plugin reads
// (and GitLab's and GitHub's reporters, which read the same files):
// testsuites > testsuite (name, tests, failures, errors, skipped, time,
// timestamp, hostname, id, package; properties, system-out, system-err)
// > testcase (name, classname, time) > failure (message, type) or skipped.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr"`
	ID         int             `xml:"id,attr"`
	Package    string          `xml:"package,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  string          `xml:"system-out"`
	SystemErr  string          `xml:"system-err"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string         `xml:"name,attr"`
	Classname string         `xml:"classname,attr"`
	Time      string         `xml:"time,attr"`
	Skipped   *junitSkipped  `xml:"skipped"`
	Errors    []junitFailure `xml:"error"`
	Failures  []junitFailure `xml:"failure"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes o as JUnit XML: a testsuite per comparison, a testcase
// per endpoint, a failure per regression (field, rates, an example);
// endpoints with too few exchanges to decide are skipped; noise and
// accepted changes are the suite's properties, never failures.
func WriteJUnit(w io.Writer, o *Outcome, elapsed time.Duration) error {
	host, _ := os.Hostname()
	secs := fmt.Sprintf("%.3f", elapsed.Seconds())
	r := &o.Report
	out := junitSuites{Name: "shadowtap", Time: secs}
	stamp := r.Generated.UTC().Format("2006-01-02T15:04:05")
	for si, cmp := range r.Comparisons {
		s := junitSuite{Name: cmp, Time: secs, Timestamp: stamp, Hostname: host, ID: si, Package: "shadowtap"}
		for _, ep := range r.Endpoints {
			i := slices.IndexFunc(ep.Comparisons, func(c compare.ComparisonReport) bool { return c.Comparison == cmp })
			if i < 0 {
				continue
			}
			cr := ep.Comparisons[i]
			tc := junitCase{Name: ep.Name, Classname: cmp, Time: "0"}
			for _, f := range o.Regressions {
				if f.Endpoint == ep.Name && f.Comparison == cmp {
					tc.Failures = append(tc.Failures, junitFailure{Type: f.failureType(), Message: f.headline(), Text: f.details()})
				}
			}
			if len(tc.Failures) == 0 && cr.Verdict == "too few" {
				tc.Skipped = &junitSkipped{Message: fmt.Sprintf("too few exchanges to decide: %d compared, %d needed", cr.Compared, r.Rules.MinSamples)}
				s.Skipped++
			}
			s.Tests++
			s.Failures += len(tc.Failures)
			s.Cases = append(s.Cases, tc)
		}
		for _, f := range o.Noise {
			if f.Comparison == cmp {
				s.Properties = append(s.Properties, junitProperty{Name: "noise " + f.Endpoint + " " + f.Field,
					Value: fmt.Sprintf("%s (%d of %d differed, explained)", f.Noise, f.Diffs, f.Compared)})
			}
		}
		for _, f := range o.Latency {
			if f.Comparison == cmp {
				s.Properties = append(s.Properties, junitProperty{Name: "latency " + f.Endpoint + " " + f.Field, Value: f.Example})
			}
		}
		for _, f := range o.Accepted {
			if f.Comparison == cmp {
				s.Properties = append(s.Properties, junitProperty{Name: "accepted " + f.Endpoint + " " + f.Field,
					Value: fmt.Sprintf("%s (%s)", f.Accepted.Reason, f.rates())})
			}
		}
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Suites = append(out.Suites, s)
	}
	if len(o.Problems) > 0 {
		s := junitSuite{Name: "replay", Time: secs, Timestamp: stamp, Hostname: host, ID: len(out.Suites), Package: "shadowtap"}
		tc := junitCase{Name: "candidate answers", Classname: "replay", Time: "0"}
		for _, p := range o.Problems {
			tc.Errors = append(tc.Errors, junitFailure{Type: "replay", Message: p})
		}
		s.Tests, s.Errors = 1, len(tc.Errors)
		s.Cases = append(s.Cases, tc)
		out.Tests++
		out.Errors += s.Errors
		out.Suites = append(out.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func (f *Finding) rates() string {
	if strings.HasPrefix(f.Field, "latency ") {
		return f.Example
	}
	return fmt.Sprintf("differs in %s (%d of %d), lower bound %s, noise %s", pct(f.Rate), f.Diffs, f.Compared, pct(f.RateLow), pct(f.NoiseRate))
}

// failureType is a JUnit failure's type: "regression", or "write
// regression" for what the request wrote to its database.
func (f *Finding) failureType() string {
	if f.Kind == "write" {
		return "write regression"
	}
	return "regression"
}

func (f *Finding) headline() string {
	if strings.HasPrefix(f.Field, "latency ") {
		return f.Field + ": slower than the reference beyond the environment's scale"
	}
	return f.Field + ": " + f.rates()
}

func (f *Finding) details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "endpoint: %s\ncomparison: %s\nfield: %s\n", f.Endpoint, f.Comparison, f.Field)
	if !strings.HasPrefix(f.Field, "latency ") {
		fmt.Fprintf(&b, "rate: %s (%d of %d exchanges)\nrate lower bound: %s\nnoise rate: %s\n", pct(f.Rate), f.Diffs, f.Compared, pct(f.RateLow), pct(f.NoiseRate))
	}
	if f.Example != "" {
		fmt.Fprintf(&b, "example: %s\n", f.Example)
	}
	return b.String()
}

func pct(v float64) string { return fmt.Sprintf("%.1f%%", v*100) }

// title is the one-line verdict.
func (o *Outcome) title(policy string) string {
	switch {
	case len(o.Regressions) > 0:
		return fmt.Sprintf("%d regression(s) in %d endpoint(s)", len(o.Regressions), o.regressedEndpoints())
	case len(o.Problems) > 0:
		return o.Problems[0]
	case policy == FailAny && len(o.Differences) > 0:
		return fmt.Sprintf("no regression, %d difference(s) below the bar", len(o.Differences))
	}
	return "no regression"
}

func (o *Outcome) regressedEndpoints() int {
	seen := map[string]bool{}
	for _, f := range o.Regressions {
		seen[f.Endpoint] = true
	}
	return len(seen)
}

// WriteSummary writes the short text summary for a terminal or a CI log:
// endpoints, exchanges, and the regressions by endpoint and field.
func WriteSummary(w io.Writer, name string, o *Outcome, policy string) error {
	r := &o.Report
	mark := "PASS"
	if o.Fails(policy) {
		mark = "FAIL"
	}
	fmt.Fprintf(w, "%s %s: %s; %d endpoint(s), %d exchange(s) compared (%d incomplete, %d dropped); %d accepted change(s)\n",
		mark, name, o.title(policy), len(r.Endpoints), r.Compared, r.Incomplete, r.Dropped, len(o.Accepted))
	for _, p := range o.Problems {
		fmt.Fprintf(w, "  problem     %s\n", p)
	}
	for _, f := range o.Regressions {
		fmt.Fprintf(w, "  regression  %-40s %-32s %s  %s\n", f.Endpoint, f.Field, f.Comparison, f.rates())
	}
	for _, f := range o.Accepted {
		fmt.Fprintf(w, "  accepted    %-40s %-32s %s  %s\n", f.Endpoint, f.Field, f.Comparison, f.Accepted.Reason)
	}
	for _, f := range o.Latency {
		fmt.Fprintf(w, "  slower      %-40s %-32s %s  %s (not gating at this replay speed)\n", f.Endpoint, f.Field, f.Comparison, f.Example)
	}
	if policy == FailAny {
		for _, f := range o.Differences {
			fmt.Fprintf(w, "  difference  %-40s %-32s %s  %s\n", f.Endpoint, f.Field, f.Comparison, f.rates())
		}
	}
	for _, a := range o.Unused {
		_, err := fmt.Fprintf(w, "  unused accept entry: %s %s (%s)\n", a.Endpoint, a.Field, a.Reason)
		if err != nil {
			return err
		}
	}
	return nil
}

// WriteMarkdown writes a summary fit for a pull-request comment or a CI
// step summary ($GITHUB_STEP_SUMMARY).
func WriteMarkdown(w io.Writer, name string, o *Outcome, policy string) error {
	r := &o.Report
	icon := "✅"
	if o.Fails(policy) {
		icon = "❌"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## %s %s: %s\n\n", icon, md(name), o.title(policy))
	fmt.Fprintf(&b, "%d endpoint(s), %d exchange(s) compared (%d incomplete, %d dropped) in %s; %d accepted change(s).\n\n",
		len(r.Endpoints), r.Compared, r.Incomplete, r.Dropped, strings.Join(r.Comparisons, ", "), len(o.Accepted))
	for _, p := range o.Problems {
		fmt.Fprintf(&b, "- **%s**\n", md(p))
	}
	if len(o.Problems) > 0 {
		b.WriteString("\n")
	}
	if len(o.Regressions) > 0 {
		b.WriteString("### Regressions\n\n| Endpoint | Field | Comparison | Rate | Noise | Example |\n|---|---|---|---|---|---|\n")
		for _, f := range o.Regressions {
			rate := fmt.Sprintf("%s (%d/%d)", pct(f.Rate), f.Diffs, f.Compared)
			noise := pct(f.NoiseRate)
			if strings.HasPrefix(f.Field, "latency ") {
				rate, noise = "", ""
			}
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s | %s |\n", code(f.Endpoint), code(f.Field), f.Comparison, rate, noise, md(f.Example))
		}
		b.WriteString("\n")
	}
	if len(o.Accepted) > 0 {
		b.WriteString("### Accepted changes\n\n| Endpoint | Field | Comparison | Rate | Reason |\n|---|---|---|---|---|\n")
		for _, f := range o.Accepted {
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s |\n", code(f.Endpoint), code(f.Field), f.Comparison,
				fmt.Sprintf("%s (%d/%d)", pct(f.Rate), f.Diffs, f.Compared), md(f.Accepted.Reason))
		}
		b.WriteString("\n")
	}
	if len(o.Differences) > 0 {
		fmt.Fprintf(&b, "<details><summary>%d difference(s) below the regression bar</summary>\n\n| Endpoint | Field | Comparison | Rate |\n|---|---|---|---|\n", len(o.Differences))
		for _, f := range o.Differences {
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s (%d/%d) |\n", code(f.Endpoint), code(f.Field), f.Comparison, pct(f.Rate), f.Diffs, f.Compared)
		}
		b.WriteString("\n</details>\n\n")
	}
	if len(o.Latency) > 0 {
		fmt.Fprintf(&b, "<details><summary>%d latency finding(s), not gating at this replay speed</summary>\n\n| Endpoint | Quantile | Comparison | Evidence |\n|---|---|---|---|\n", len(o.Latency))
		for _, f := range o.Latency {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", code(f.Endpoint), md(f.Field), f.Comparison, md(f.Example))
		}
		b.WriteString("\n</details>\n\n")
	}
	if len(o.Noise) > 0 {
		fmt.Fprintf(&b, "<details><summary>%d field(s) explained as noise</summary>\n\n| Endpoint | Field | Comparison | Why |\n|---|---|---|---|\n", len(o.Noise))
		for _, f := range o.Noise {
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", code(f.Endpoint), code(f.Field), f.Comparison, md(f.Noise))
		}
		b.WriteString("\n</details>\n\n")
	}
	for _, a := range o.Unused {
		fmt.Fprintf(&b, "- accept entry matched nothing: `%s` `%s` (%s)\n", code(a.Endpoint), code(a.Field), md(a.Reason))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// md makes text safe in a table cell.
func md(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(s)
}

// code makes text safe inside a code span in a table cell.
func code(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "`", "'"), "|", `\|`)
}
