// Package fleet reads the live state of a fleet of handlers for merging
// into one report: handlers named by their admin addresses, or found in
// an NLB target group through the AWS API, each read at once from its
// /api/state with the fleet's credentials, and handlers that share a
// name told apart.
package fleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// handler is a running handler whose mergeable state is read from its
// admin server's /api/state.
type handler struct {
	URL   string // the state's URL
	Label string // how messages name it: the address, or the target and its address
}

// StateURL turns a -from value ("http://h1:4790", "h1:4790",
// "http://h1:4790/api/state") into the state's URL.
func StateURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("-from %q: want a handler's admin address, http://HOST:PORT", s)
	}
	if !strings.HasSuffix(u.Path, "/api/state") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/api/state"
	}
	return u.String(), nil
}

// state is one handler's state, read.
type state struct {
	h    handler
	name string // the handler's own name (its host name)
	data []byte // difference-log lines
	err  error
}

// access is how the handlers' admin servers are read: basic auth and the
// authorities their TLS certificates are checked against.
type access struct {
	user, password string
	roots          *x509.CertPool // nil: the system's
}

// readAccess reads -from-auth-file (user:password on its first line) and
// -from-ca-file.
func readAccess(authFile, caFile string) (access, error) {
	var a access
	if authFile != "" {
		b, err := os.ReadFile(authFile)
		if err != nil {
			return a, err
		}
		line, _, _ := strings.Cut(string(b), "\n")
		var ok bool
		if a.user, a.password, ok = strings.Cut(strings.TrimRight(line, "\r"), ":"); !ok {
			return a, fmt.Errorf("%s: want user:password on its first line", authFile)
		}
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return a, err
		}
		a.roots = x509.NewCertPool()
		if !a.roots.AppendCertsFromPEM(b) {
			return a, fmt.Errorf("%s: no PEM certificate", caFile)
		}
	}
	return a, nil
}

// fetchStates reads every handler's state at once, each within timeout.
func fetchStates(ctx context.Context, hs []handler, timeout time.Duration, a access) []state {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.roots}}}
	out := make([]state, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Go(func() {
			out[i] = state{h: h}
			out[i].data, out[i].name, out[i].err = fetchState(ctx, client, h.URL, a)
		})
	}
	wg.Wait()
	return out
}

// maxState bounds a handler's state: whole latency reservoirs of every
// endpoint and a few sample exchanges each stay far below it.
const maxState = 1 << 30

func fetchState(ctx context.Context, client *http.Client, u string, a access) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	if a.user != "" {
		req.SetBasicAuth(a.user, a.password)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		hint := ""
		switch resp.StatusCode {
		case http.StatusNotFound:
			hint = " (is that handler comparing, compare.candidate set, and a version that serves /api/state?)"
		case http.StatusUnauthorized:
			hint = " (its -web-config asks for credentials: -from-auth-file)"
		}
		return nil, "", fmt.Errorf("GET %s: %s%s", u, resp.Status, hint)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxState+1))
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", u, err)
	}
	if len(data) > maxState {
		return nil, "", fmt.Errorf("GET %s: state over %d bytes", u, maxState)
	}
	// The first line names the handler (compare.Comparator.WriteState):
	// anything else is not a handler's state.
	first, _, _ := bytes.Cut(data, []byte("\n"))
	var head struct{ Type, Handler string }
	if json.Unmarshal(first, &head) != nil || head.Type != "handler" {
		return nil, "", fmt.Errorf("GET %s: not a shadowtap handler's state", u)
	}
	return data, head.Handler, nil
}

// relabel renames the handler in every line of a state. Handlers are
// named by host name, which two handlers on one machine (or containers
// given the same host name) share; merged under one name, one would
// silently replace the other's counts.
func relabel(data []byte, name string) ([]byte, error) {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), maxState)
	quoted, _ := json.Marshal(name)
	for sc.Scan() {
		var line map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, err
		}
		line["handler"] = quoted
		b, err := json.Marshal(line)
		if err != nil {
			return nil, err
		}
		out.Write(append(b, '\n'))
	}
	return out.Bytes(), sc.Err()
}

// TargetHealthAPI is the Elastic Load Balancing call that lists a target
// group's targets.
type TargetHealthAPI interface {
	DescribeTargetHealth(context.Context, *elb.DescribeTargetHealthInput, ...func(*elb.Options)) (*elb.DescribeTargetHealthOutput, error)
}

// InstancesAPI is the EC2 call that gives instance targets' addresses.
type InstancesAPI interface {
	DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// target is a target of the group: where its admin server is, or
// why it cannot be read.
type target struct {
	handler
	err error
}

// targetGroupHandlers lists the handlers registered in a target group:
// IP targets at their address, instance targets at their private address
// (EC2 DescribeInstances), each at adminPort (0: the port the target is
// registered with, for a target group of the admin listener). Every
// registered target is listed whatever its health (a draining or
// unhealthy handler may still hold its share of the counts); its state
// is in its label. A target that has no address (an instance gone, a
// Lambda or load balancer target) comes back with its error.
func targetGroupHandlers(ctx context.Context, lb TargetHealthAPI, api InstancesAPI, arn string, adminPort int) ([]target, error) {
	th, err := lb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn)})
	if err != nil {
		return nil, fmt.Errorf("target group %s: %w", arn, err)
	}
	type reg struct {
		id, state string
		port      int
	}
	var regs []reg
	var instances []string
	for _, d := range th.TargetHealthDescriptions {
		if d.Target == nil || d.Target.Id == nil {
			continue
		}
		r := reg{id: *d.Target.Id}
		if d.Target.Port != nil {
			r.port = int(*d.Target.Port)
		}
		if d.TargetHealth != nil {
			r.state = string(d.TargetHealth.State)
		}
		regs = append(regs, r)
		if strings.HasPrefix(r.id, "i-") {
			instances = append(instances, r.id)
		}
	}
	if len(regs) == 0 {
		return nil, fmt.Errorf("target group %s: no targets registered", arn)
	}
	ips := map[string]string{}
	for start := 0; start < len(instances); start += 200 { // the API's limit of filter values
		in := &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("instance-id"),
			Values: instances[start:min(start+200, len(instances))]}}}
		p := ec2.NewDescribeInstancesPaginator(api, in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("instances of target group %s: %w", arn, err)
			}
			for _, rs := range page.Reservations {
				for _, i := range rs.Instances {
					if i.InstanceId != nil && i.PrivateIpAddress != nil {
						ips[*i.InstanceId] = *i.PrivateIpAddress
					}
				}
			}
		}
	}
	var out []target
	seen := map[string]bool{} // an instance registered on several ports is one handler
	for _, r := range regs {
		port := adminPort
		if port == 0 {
			port = r.port
		}
		ft := target{handler: handler{Label: r.id}}
		host := r.id
		if strings.HasPrefix(r.id, "i-") {
			host = ips[r.id]
		}
		addr, perr := netip.ParseAddr(host)
		switch {
		case strings.HasPrefix(r.id, "i-") && host == "":
			ft.err = errors.New("instance not found or without a private address (terminated?)")
		case perr != nil:
			ft.err = errors.New("neither an instance nor an IP target")
		case port <= 0 || port > 65535:
			ft.err = fmt.Errorf("no admin port (-admin-port, or the target's port: %d)", r.port)
		default:
			ap := netip.AddrPortFrom(addr, uint16(port)).String()
			if seen[ap] {
				continue
			}
			seen[ap] = true
			ft.URL = "http://" + ap + "/api/state"
			if host != r.id {
				ft.Label += " " + ap // the instance, and where it was read
			} else {
				ft.Label = ap
			}
		}
		if r.state != "" {
			ft.Label += " (" + r.state + ")"
		}
		out = append(out, ft)
	}
	return out, nil
}
