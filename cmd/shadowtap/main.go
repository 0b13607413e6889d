// Command shadowtap replays mirrored production HTTP traffic to test
// environments. See README.md; the commands live in internal/cli.
package main

import (
	"os"

	"github.com/shadowtap/shadowtap/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(cli.Main(version, os.Args[1:], os.Stdout, os.Stderr)) }
