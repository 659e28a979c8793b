package main

import (
	"os"
	"testing"
)

// mainEnv makes the test binary act as the zrepl-ha binary, so platform
// tests can start real daemons (in network namespaces) without a build.
const mainEnv = "ZREPLHA_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
