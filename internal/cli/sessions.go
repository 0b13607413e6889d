package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/shadowtap/shadowtap/internal/sessions"
)

const sessionsUsage = `usage:
  shadowtap sessions check -target TMT -filter TMF [-tag K=V]... [-subnet S]... [-vpc V]... [-port 80] [-json]
  shadowtap sessions sync  -target TMT -filter TMF -vni N [-tag K=V]... [-subnet S]... [-vpc V]... [-dry-run] [-watch 1m] [-force]
`

// sessionsCmd runs `shadowtap sessions check` (the read-only pre-flight
// check) and `shadowtap sessions sync` (traffic mirror sessions for every
// selected instance, none for instances that are gone; the check first).
// Credentials and region come the usual SDK way (environment, shared
// config, instance role); -region, -endpoint and -elb-endpoint override
// them.
func sessionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "sync" && args[0] != "check") {
		fmt.Fprint(stderr, sessionsUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("sessions "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o sessions.Options
	var tags, subnets, vpcs listFlag
	fs.StringVar(&o.Target, "target", "", "traffic mirror target id (the stack's TrafficMirrorTargetId output)")
	fs.StringVar(&o.Filter, "filter", "", "traffic mirror filter id (the stack's TrafficMirrorFilterId output)")
	number := fs.Int("session-number", 1, "preferred session number: 1 mirrors first; taken numbers move it up, with a warning")
	fs.Var(&tags, "tag", "select instances with this tag, KEY=VALUE (repeatable: all must match)")
	fs.Var(&subnets, "subnet", "select instances in this subnet (repeatable)")
	fs.Var(&vpcs, "vpc", "select instances in this VPC (repeatable)")
	fs.IntVar(&o.Port, "port", 80, "production's service port: the filter must mirror requests to it and responses from it")
	fs.IntVar(&o.SourceMTU, "source-mtu", sessions.DefaultMTU, "the sources' interface MTU (the default is EC2's in a VPC)")
	fs.IntVar(&o.TargetMTU, "target-mtu", sessions.DefaultMTU, "an interface target's MTU")
	typesFile := fs.String("instance-types", "", "YAML list of the instance types that can be mirror sources, replacing the built-in one (same shape)")
	region := fs.String("region", "", "AWS region (default: the SDK's)")
	endpoint := fs.String("endpoint", "", "EC2 endpoint URL (default: the region's)")
	elbEndpoint := fs.String("elb-endpoint", "", "Elastic Load Balancing endpoint URL (default: the region's)")
	vni, watch, jsonOut := new(int), new(time.Duration), new(bool)
	if sub == "sync" {
		fs.IntVar(vni, "vni", 1234, "VXLAN network id of the sessions (shadowtap -vni)")
		fs.BoolVar(&o.DryRun, "dry-run", false, "print the plan; change nothing")
		fs.BoolVar(&o.DeleteAll, "delete-all", false, "tear down: delete every session shadowtap created for -target (no selector needed)")
		fs.BoolVar(&o.Force, "force", false, "create sessions even where the pre-flight check fails")
		fs.DurationVar(watch, "watch", 0, "repeat every interval until interrupted")
	} else {
		fs.BoolVar(jsonOut, "json", false, "print the findings as JSON")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return usageError(stderr, err)
	}
	o.SessionNumber, o.VNI = int32(*number), int32(*vni)
	o.Tags = map[string]string{}
	for _, kv := range tags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageError(stderr, fmt.Errorf("-tag %q: want KEY=VALUE", kv))
		}
		o.Tags[k] = v
	}
	o.Subnets, o.VPCs = subnets, vpcs
	if len(o.Tags) == 0 && len(o.Subnets) == 0 && len(o.VPCs) == 0 && !o.DeleteAll {
		return usageError(stderr, errors.New("select instances with -tag, -subnet or -vpc"))
	}
	if *typesFile != "" {
		t, err := sessions.LoadInstanceTypes(*typesFile)
		if err != nil {
			return usageError(stderr, err)
		}
		o.Types = t
	}
	var opts []func(*awsconfig.LoadOptions) error
	if *region != "" {
		opts = append(opts, awsconfig.WithRegion(*region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "sessions:", err)
		return 1
	}
	api := ec2.NewFromConfig(cfg, func(e *ec2.Options) {
		if *endpoint != "" {
			e.BaseEndpoint = aws.String(*endpoint)
		}
	})
	lb := elb.NewFromConfig(cfg, func(e *elb.Options) {
		if *elbEndpoint != "" {
			e.BaseEndpoint = aws.String(*elbEndpoint)
		}
	})
	if sub == "check" {
		return sessionsCheck(ctx, api, lb, o, *jsonOut, stdout, stderr)
	}
	if *watch > 0 {
		if err := sessions.Watch(ctx, api, lb, o, *watch, stdout); err != nil {
			fmt.Fprintln(stderr, "sessions:", err)
			return 1
		}
		return 0
	}
	r, err := sessions.Sync(ctx, api, lb, o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	r.Report(stdout, o.DryRun)
	if r.Refusals > 0 {
		return 1 // never a partial silent failure
	}
	return 0
}

// sessionsCheck prints the pre-flight check: exit 0 when nothing fails.
func sessionsCheck(ctx context.Context, api sessions.API, lb sessions.ELBAPI, o sessions.Options, asJSON bool, stdout, stderr io.Writer) int {
	r, err := sessions.Check(ctx, api, lb, o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if asJSON {
		if err := r.WriteJSON(stdout); err != nil {
			fmt.Fprintln(stderr, "sessions:", err)
			return 1
		}
	} else {
		r.Write(stdout)
	}
	if r.Fail > 0 {
		return 1
	}
	return 0
}
