package fleet

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// Options say which handlers to read, and how.
type Options struct {
	From        []string // admin addresses (see StateURL)
	TargetGroup string   // an NLB target group's ARN: every handler registered in it
	AdminPort   int      // the target group's handlers' admin port (0: the port each is registered with)
	Region      string   // AWS region (default: the SDK's)
	ELBEndpoint string   // Elastic Load Balancing endpoint URL (default: the region's)
	EC2Endpoint string   // EC2 endpoint URL (default: the region's)
	AuthFile    string   // user:password on its first line, for the handlers' basic auth
	CAFile      string   // PEM authorities the handlers' TLS certificates are checked against
	Timeout     time.Duration
}

// States is what Gather read.
type States struct {
	// Logs holds each handler's state as difference-log lines
	// (compare.MergeLogs reads them), every handler under its own name.
	Logs [][]byte
	// Read names the handlers read, Missing those that could not be,
	// with why ("label: reason").
	Read, Missing []string
	// Renamed tells of handlers that called themselves by a name another
	// had, and the name each was merged under.
	Renamed []string
}

// Gather reads the live state of every handler o names, all at once. A
// handler named twice (by From and by the target group) is read once:
// twice, its counts would double. Handlers that cannot be read are in
// Missing; an error means none could be looked for (the target group or
// the credentials could not be read).
func Gather(ctx context.Context, o Options) (States, error) {
	var st States
	var hs []handler
	for _, f := range o.From {
		u, err := StateURL(f)
		if err != nil {
			return st, err
		}
		hs = append(hs, handler{URL: u, Label: strings.TrimSuffix(u, "/api/state")})
	}
	if o.TargetGroup != "" {
		targets, err := discover(ctx, o)
		if err != nil {
			return st, err
		}
		for _, t := range targets {
			if t.err != nil {
				st.Missing = append(st.Missing, t.Label+": "+t.err.Error())
			} else {
				hs = append(hs, t.handler)
			}
		}
	}
	seen := map[string]bool{}
	hs = slices.DeleteFunc(hs, func(h handler) bool {
		dup := seen[h.URL]
		seen[h.URL] = true
		return dup
	})
	creds, err := readAccess(o.AuthFile, o.CAFile)
	if err != nil {
		return st, err
	}
	names := map[string]string{} // handler name -> the first handler that had it
	for _, s := range fetchStates(ctx, hs, o.Timeout, creds) {
		if s.err != nil {
			st.Missing = append(st.Missing, s.h.Label+": "+s.err.Error())
			continue
		}
		name := s.name
		if prev, ok := names[name]; ok {
			u, _ := url.Parse(s.h.URL)
			name = s.name + " " + u.Host
			st.Renamed = append(st.Renamed, fmt.Sprintf("%s and %s both call themselves %q: merged as %q", prev, s.h.Label, s.name, name))
			if s.data, err = relabel(s.data, name); err != nil {
				return st, fmt.Errorf("%s: %w", s.h.Label, err)
			}
		}
		names[name] = s.h.Label
		st.Read = append(st.Read, s.h.Label)
		st.Logs = append(st.Logs, s.data)
	}
	return st, nil
}

// discover lists the handlers of o's target group through the AWS API:
// credentials and region the usual SDK way, as `sessions` takes them.
func discover(ctx context.Context, o Options) ([]target, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if o.Region != "" {
		opts = append(opts, awsconfig.WithRegion(o.Region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, err
	}
	lb := elb.NewFromConfig(cfg, func(eo *elb.Options) {
		if o.ELBEndpoint != "" {
			eo.BaseEndpoint = aws.String(o.ELBEndpoint)
		}
	})
	api := ec2.NewFromConfig(cfg, func(eo *ec2.Options) {
		if o.EC2Endpoint != "" {
			eo.BaseEndpoint = aws.String(o.EC2Endpoint)
		}
	})
	return targetGroupHandlers(ctx, lb, api, o.TargetGroup, o.AdminPort)
}
