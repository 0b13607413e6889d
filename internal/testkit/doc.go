// Package testkit holds no code: its packages are what the tests,
// benchmarks and the demo stand on, apart from the product's stages.
//
//   - fakeshop: the comparison's small shop API, with planted differences
//   - shoptest: a stateful shop and a recording of its answers, for the gate
//   - rawserver: a test environment that records every request byte-exact
//   - synth: mirrored traffic built by hand (TCP segments, VXLAN, Geneve)
//   - netlab: network namespaces with a kernel traffic mirror (root)
//   - procstat: a process's CPU and memory, from /proc
//   - pgtest, redistest: a real PostgreSQL or Redis started for a test
//   - ec2fake, elbfake: the AWS APIs that mirror sessions need, in memory
//   - e2e: the end-to-end suites (real frameworks, databases, kernel mirror)
package testkit
