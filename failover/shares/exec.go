package shares

import (
	"context"

	"github.com/zrepl-ha/zrepl-ha/internal/command"
)

// Execer runs a program directly (no shell) and returns its standard
// output. A failure is an error that names the command line and carries
// the program's stderr (*command.Error for the real runner). Tests use a
// fake that records calls.
type Execer interface {
	Output(ctx context.Context, path string, args ...string) ([]byte, error)
}

// Runner adapts internal/command's Runner to Execer.
type Runner struct{ R *command.Runner }

// Output implements Execer.
func (r Runner) Output(ctx context.Context, path string, args ...string) ([]byte, error) {
	cr := r.R
	if cr == nil {
		cr = &command.Runner{}
	}
	return cr.Command(ctx, path, args...).Output()
}
