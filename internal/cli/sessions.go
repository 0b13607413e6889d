package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/shadowtap/shadowtap/internal/sessions"
)

// sessionsCmd runs `shadowtap sessions sync`: traffic mirror sessions for
// every selected instance, none for instances that are gone. Credentials
// and region come the usual SDK way (environment, shared config, instance
// role); -region and -endpoint override them.
func sessionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "sync" {
		fmt.Fprint(stderr, "usage: shadowtap sessions sync -target TMT -filter TMF -vni N [-tag K=V]... [-subnet S]... [-vpc V]... [-dry-run] [-watch 1m]\n")
		return 2
	}
	fs := flag.NewFlagSet("sessions sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o sessions.Options
	var tags, subnets, vpcs listFlag
	fs.StringVar(&o.Target, "target", "", "traffic mirror target id (the stack's TrafficMirrorTargetId output)")
	fs.StringVar(&o.Filter, "filter", "", "traffic mirror filter id (the stack's TrafficMirrorFilterId output)")
	vni := fs.Int("vni", 1234, "VXLAN network id of the sessions (shadowtap -vni)")
	number := fs.Int("session-number", 1, "preferred session number: 1 mirrors first; taken numbers move it up, with a warning")
	fs.Var(&tags, "tag", "select instances with this tag, KEY=VALUE (repeatable: all must match)")
	fs.Var(&subnets, "subnet", "select instances in this subnet (repeatable)")
	fs.Var(&vpcs, "vpc", "select instances in this VPC (repeatable)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print the plan; change nothing")
	fs.BoolVar(&o.DeleteAll, "delete-all", false, "tear down: delete every session shadowtap created for -target (no selector needed)")
	watch := fs.Duration("watch", 0, "repeat every interval until interrupted")
	region := fs.String("region", "", "AWS region (default: the SDK's)")
	endpoint := fs.String("endpoint", "", "EC2 endpoint URL (default: the region's)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError(stderr, err)
	}
	o.VNI, o.SessionNumber = int32(*vni), int32(*number)
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
	if *watch > 0 {
		if err := sessions.Watch(ctx, api, o, *watch, stdout); err != nil {
			fmt.Fprintln(stderr, "sessions:", err)
			return 1
		}
		return 0
	}
	r, err := sessions.Sync(ctx, api, o)
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
