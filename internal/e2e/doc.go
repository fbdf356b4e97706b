// Package e2e holds the end-to-end tests of the link: the edge (sync) and
// HQ (hq) talking through real brokers (mosquitto, the shipped TLS/ACL
// configuration, the embedded broker, a fault-injecting proxy), killed and
// restarted, at scale (TestPerf*, run by make bench). Tests of one side
// alone live with that side. The package has no code of its own.
package e2e
