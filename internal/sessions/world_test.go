package sessions_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/shadowtap/shadowtap/internal/testkit/ec2fake"
	"github.com/shadowtap/shadowtap/internal/testkit/elbfake"
)

const lbARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/shadowtap/0abc"

// web is a production instance the tests select (role=web), in us-east-1a,
// with an address in 10.0.1.0/24 and the web security group.
func web(id string, itype string) ec2fake.Instance {
	n, _ := strconv.Atoi(id[2:])
	return ec2fake.Instance{ID: id, ENI: "eni-" + id[2:], Type: itype, Subnet: "subnet-a", VPC: "vpc-1", State: "running",
		AZ: "us-east-1a", IP: fmt.Sprintf("10.0.1.%d", n), Groups: []string{"sg-web"}, Tags: map[string]string{"role": "web"}}
}

// world is an account where mirroring the given instances works, as the
// CloudFormation stack sets it up: an internal Network Load Balancer in
// us-east-1a and us-east-1b with cross-zone load balancing, a UDP 4789
// listener (after an admin TCP listener) forwarding to two healthy
// handlers, one a zone; a filter with rules for requests to port 80 and
// responses from it; security groups and network ACLs that let VXLAN in
// from the VPC. Each test breaks one thing. Target tmt-eni is an
// interface target on a handler-like instance.
func world(t *testing.T, sources ...ec2fake.Instance) (*ec2fake.Server, *elbfake.Server) {
	t.Helper()
	f := &ec2fake.Server{PageSize: 50,
		Instances: append(sources,
			ec2fake.Instance{ID: "i-h1", ENI: "eni-h1", Type: "c7g.large", Subnet: "subnet-h1", VPC: "vpc-1", State: "running",
				AZ: "us-east-1a", IP: "10.0.9.1", Groups: []string{"sg-handler"}, Tags: map[string]string{"role": "shadowtap"}},
			ec2fake.Instance{ID: "i-h2", ENI: "eni-h2", Type: "c7g.large", Subnet: "subnet-h2", VPC: "vpc-1", State: "running",
				AZ: "us-east-1b", IP: "10.0.10.1", Groups: []string{"sg-handler"}, Tags: map[string]string{"role": "shadowtap"}}),
		Targets: []ec2fake.Target{{ID: "tmt-nlb", NLB: lbARN}, {ID: "tmt-eni", ENI: "eni-h9"}},
		Filters: []ec2fake.Filter{{ID: "tmf-http",
			Ingress: []ec2fake.Rule{{Number: 100, Accept: true, Protocol: 6, DstFrom: 80, DstTo: 80}},
			Egress:  []ec2fake.Rule{{Number: 100, Accept: true, Protocol: 6, SrcFrom: 80, SrcTo: 80}}}},
		Interfaces: []ec2fake.Interface{{ID: "eni-h9", Subnet: "subnet-h1", AZ: "us-east-1a", IP: "10.0.9.9", Groups: []string{"sg-handler"}}},
		SecurityGroups: []ec2fake.SecurityGroup{
			{ID: "sg-handler", Ingress: []ec2fake.Permission{
				{Protocol: "tcp", From: 4790, To: 4790, CIDRs: []string{"10.0.0.0/16"}},
				{Protocol: "udp", From: 4789, To: 4789, CIDRs: []string{"10.0.0.0/16"}}}},
			{ID: "sg-web", Ingress: []ec2fake.Permission{{Protocol: "tcp", From: 80, To: 80, CIDRs: []string{"0.0.0.0/0"}}}},
		},
		NetworkACLs: []ec2fake.NetworkACL{{ID: "acl-1", Subnets: []string{"subnet-a", "subnet-lb-a", "subnet-lb-b", "subnet-h1", "subnet-h2"},
			Entries: []ec2fake.ACLEntry{
				{Number: 100, Protocol: "-1", CIDR: "0.0.0.0/0", Allow: true},
				{Number: 100, Egress: true, Protocol: "-1", CIDR: "0.0.0.0/0", Allow: true},
				{Number: 32767, Protocol: "-1", CIDR: "0.0.0.0/0"},
				{Number: 32767, Egress: true, Protocol: "-1", CIDR: "0.0.0.0/0"}}}},
	}
	lb := &elbfake.Server{
		LoadBalancers: []elbfake.LoadBalancer{{ARN: lbARN, Name: "shadowtap", Type: "network", CrossZone: true,
			Zones:     map[string]string{"us-east-1a": "subnet-lb-a", "us-east-1b": "subnet-lb-b"},
			Listeners: []elbfake.Listener{{Protocol: "TCP", Port: 4790, TargetGroup: "tg-admin"}, {Protocol: "UDP", Port: 4789, TargetGroup: "tg-vxlan"}}}},
		TargetGroups: []elbfake.TargetGroup{{ARN: "tg-vxlan", Targets: []elbfake.Target{{ID: "i-h1", State: "healthy"}, {ID: "i-h2", State: "healthy"}}}},
	}
	return f, lb
}
