package deploy

import (
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v4"
	"gopkg.in/yaml.v3"

	"github.com/shadowtap/shadowtap/internal/config"
)

const templateFile = "shadowtap-cfn.yaml"

// required lists, for the resource types the template uses, the
// properties the CloudFormation resource specification marks required.
var required = map[string][]string{
	"AWS::EC2::SecurityGroup":                   {"GroupDescription"},
	"AWS::IAM::Role":                            {"AssumeRolePolicyDocument"},
	"AWS::IAM::InstanceProfile":                 {"Roles"},
	"AWS::EC2::LaunchTemplate":                  {"LaunchTemplateData"},
	"AWS::ElasticLoadBalancingV2::LoadBalancer": {},
	"AWS::ElasticLoadBalancingV2::TargetGroup":  {},
	"AWS::ElasticLoadBalancingV2::Listener":     {"DefaultActions", "LoadBalancerArn"},
	"AWS::AutoScaling::AutoScalingGroup":        {"MaxSize", "MinSize"},
	"AWS::EC2::TrafficMirrorTarget":             {},
	"AWS::EC2::TrafficMirrorFilter":             {},
	"AWS::ElastiCache::SubnetGroup":             {"Description", "SubnetIds"},
	"AWS::ElastiCache::ReplicationGroup":        {"ReplicationGroupDescription"},
	"AWS::SecretsManager::Secret":               {},
	"AWS::IAM::Policy":                          {"PolicyDocument", "PolicyName"},
	"AWS::EC2::TrafficMirrorFilterRule":         {"DestinationCidrBlock", "RuleAction", "RuleNumber", "SourceCidrBlock", "TrafficDirection", "TrafficMirrorFilterId"},
}

var pseudo = []string{"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition", "AWS::Region",
	"AWS::StackId", "AWS::StackName", "AWS::URLSuffix"}

type cfn struct {
	Parameters map[string]yaml.Node `yaml:"Parameters"`
	Resources  map[string]struct {
		Type       string               `yaml:"Type"`
		Properties map[string]yaml.Node `yaml:"Properties"`
	} `yaml:"Resources"`
	Outputs map[string]yaml.Node `yaml:"Outputs"`
}

func load(t *testing.T) (cfn, yaml.Node, []byte) {
	b, err := os.ReadFile(templateFile)
	if err != nil {
		t.Fatal(err)
	}
	var c cfn
	var root yaml.Node
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	yaml.Unmarshal(b, &root)
	return c, root, b
}

// TestTemplateParses: goformation, a CloudFormation library with a typed
// model of every resource, reads the template and finds the resources
// typed as expected.
func TestTemplateParses(t *testing.T) {
	tpl, err := goformation.Open(templateFile)
	if err != nil {
		t.Fatalf("goformation: %v", err)
	}
	tg, err := tpl.GetElasticLoadBalancingV2TargetGroupWithName("MirrorTargetGroup")
	if err != nil || tg.Protocol != "UDP" || tg.Port != 4789 || tg.HealthCheckProtocol != "TCP" || tg.HealthCheckPort != "4789" {
		t.Errorf("mirror target group: %+v %v", tg, err)
	}
	for name, dir := range map[string]string{"MirrorFilterRequests": "ingress", "MirrorFilterResponses": "egress"} {
		r, err := tpl.GetEC2TrafficMirrorFilterRuleWithName(name)
		if err != nil || r.TrafficDirection != dir || r.RuleAction != "accept" || r.Protocol != 6 {
			t.Errorf("%s: %+v %v", name, r, err)
		}
	}
	lb, err := tpl.GetElasticLoadBalancingV2LoadBalancerWithName("LoadBalancer")
	if err != nil || lb.Type != "network" || lb.Scheme != "internal" || len(lb.LoadBalancerAttributes) != 1 ||
		lb.LoadBalancerAttributes[0].Key != "load_balancing.cross_zone.enabled" {
		t.Errorf("load balancer: %+v %v", lb, err)
	}
	if len(tpl.Resources) != 19 {
		t.Errorf("%d resources", len(tpl.Resources))
	}
	// The shared store: optional, Valkey with TLS, reached by the handlers
	// alone.
	rg, err := tpl.GetElastiCacheReplicationGroupWithName("StoreCluster")
	if err != nil || rg.Engine != "valkey" || !rg.TransitEncryptionEnabled || rg.AWSCloudFormationCondition != "WithStore" {
		t.Errorf("store: %+v %v", rg, err)
	}
	sg, err := tpl.GetEC2SecurityGroupWithName("StoreSecurityGroup")
	if err != nil || len(sg.SecurityGroupIngress) != 1 || sg.SecurityGroupIngress[0].FromPort != 6379 {
		t.Errorf("store security group: %+v %v", sg, err)
	}
}

// TestTemplateIsConsistent checks resource types and their required
// properties, that every parameter is used, and that every reference
// resolves.
func TestTemplateIsConsistent(t *testing.T) {
	c, root, _ := load(t)
	for name, r := range c.Resources {
		props, known := required[r.Type]
		if !known {
			t.Errorf("%s: type %s not checked", name, r.Type)
		}
		for _, p := range props {
			if _, ok := r.Properties[p]; !ok {
				t.Errorf("%s (%s): required property %s missing", name, r.Type, p)
			}
		}
	}
	used := map[string]bool{}
	var walk func(n *yaml.Node, subVars []string)
	subRe := regexp.MustCompile(`\$\{([A-Za-z0-9:]+)(\.[A-Za-z0-9.]+)?\}`)
	check := func(ref string, where string, subVars []string) {
		used[ref] = true
		_, isParam := c.Parameters[ref]
		_, isRes := c.Resources[ref]
		if !isParam && !isRes && !slices.Contains(pseudo, ref) && !slices.Contains(subVars, ref) {
			t.Errorf("%s %q resolves to nothing", where, ref)
		}
	}
	walk = func(n *yaml.Node, subVars []string) {
		switch n.Tag {
		case "!Ref":
			check(n.Value, "Ref", subVars)
		case "!GetAtt":
			res, _, _ := strings.Cut(n.Value, ".")
			if _, ok := c.Resources[res]; !ok {
				t.Errorf("GetAtt %q: no such resource", n.Value)
			}
			used[res] = true
		case "!Sub":
			str := n
			var vars []string
			if n.Kind == yaml.SequenceNode {
				str = n.Content[0]
				m := n.Content[1]
				for i := 0; i+1 < len(m.Content); i += 2 {
					vars = append(vars, m.Content[i].Value)
					walk(m.Content[i+1], subVars)
				}
			}
			for _, m := range subRe.FindAllStringSubmatch(str.Value, -1) {
				check(m[1], "Sub variable", append(vars, subVars...))
			}
			return
		}
		for _, k := range n.Content {
			walk(k, subVars)
		}
	}
	walk(&root, nil)
	for p := range c.Parameters {
		if !used[p] {
			t.Errorf("parameter %s is never used", p)
		}
	}
	for _, want := range []string{"TrafficMirrorTargetId", "TrafficMirrorFilterId", "AdminUrl"} {
		if _, ok := c.Outputs[want]; !ok {
			t.Errorf("output %s missing", want)
		}
	}
}

// TestUserDataFlags: the instances install the binary with its checksum
// checked, and start shadowtap with flags it has and the README documents.
func TestUserDataFlags(t *testing.T) {
	_, _, raw := load(t)
	text := string(raw)
	for _, want := range []string{`sha256sum -c -`, "systemctl enable --now shadowtap", "Restart=always", "LimitNOFILE",
		"net.core.rmem_max = 67108864", "install -m 0755 /tmp/shadowtap /usr/local/bin/shadowtap"} {
		if !strings.Contains(text, want) {
			t.Errorf("user data lacks %q", want)
		}
	}
	if strings.Contains(text, "go build") || strings.Contains(text, "golang") {
		t.Error("user data compiles on boot")
	}
	line := regexp.MustCompile(`SHADOWTAP_FLAGS=(.*)`).FindStringSubmatch(text)
	if line == nil {
		t.Fatal("no SHADOWTAP_FLAGS in user data")
	}
	flags := regexp.MustCompile(`(?:^|\s)-([a-z-]+)`).FindAllStringSubmatch(line[1], -1)
	if len(flags) < 8 {
		t.Fatalf("only %d flags", len(flags))
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c := config.Default()
	c.RegisterFlags(fs)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flags {
		if fs.Lookup(f[1]) == nil {
			t.Errorf("user data uses -%s, which shadowtap does not have", f[1])
		}
		if !strings.Contains(string(readme), "`-"+f[1]+"`") {
			t.Errorf("user data uses -%s, which README.md does not document", f[1])
		}
	}
	unit, _ := os.ReadFile("shadowtap.service")
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/shadowtap $SHADOWTAP_FLAGS") {
		t.Error("deploy/shadowtap.service does not start the binary the template installs")
	}
}
