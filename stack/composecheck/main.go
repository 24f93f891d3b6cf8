// composecheck loads a Compose file with compose-spec's own loader, the code `docker compose config`
// runs: variables interpolated from the environment, the Compose schema applied, depends_on and
// healthchecks resolved. It prints the resolved project as JSON on stdout; an invalid file gets the
// loader's message in one line on stderr and exit 1. tests/integration/test_compose_spec.py builds and runs it.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func fail(code int, format string, args ...any) {
	message := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	fmt.Fprintln(os.Stderr, "composecheck: "+message)
	os.Exit(code)
}

func main() {
	if len(os.Args) != 2 {
		fail(2, "usage: composecheck COMPOSE_FILE")
	}
	options, err := cli.NewProjectOptions(
		[]string{os.Args[1]}, cli.WithOsEnv, cli.WithName("k2"), cli.WithConsistency(true),
	)
	if err != nil {
		fail(1, "%v", err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(1, "%s: %v", os.Args[1], err)
	}
	resolved, err := project.MarshalJSON()
	if err != nil {
		fail(1, "%v", err)
	}
	os.Stdout.Write(append(resolved, '\n'))
}
