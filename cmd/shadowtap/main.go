// Command shadowtap replays mirrored production HTTP traffic to test
// environments. See README.md; the commands live in internal/cli.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/shadowtap/shadowtap/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// SHADOWTAP_CPU_PROFILE=FILE writes a CPU profile of the whole run
	// (go tool pprof FILE), for benchmarks such as cmd/capbench.
	if path := os.Getenv("SHADOWTAP_CPU_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "shadowtap: cpu profile:", err)
			os.Exit(1)
		}
		code := cli.Main(version, os.Args[1:], os.Stdout, os.Stderr)
		pprof.StopCPUProfile()
		f.Close()
		os.Exit(code)
	}
	os.Exit(cli.Main(version, os.Args[1:], os.Stdout, os.Stderr))
}
