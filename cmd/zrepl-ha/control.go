package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/internal/config"
)

// controlOptions locate the daemon's control socket; status, failover,
// demote and switchover share them.
type controlOptions struct {
	ConfigPath string // the global --config, read for node.control_socket
	Socket     string // --socket; overrides the config when set
}

// socketFlag is --socket, for every command that talks to the daemon.
func socketFlag() cli.Flag {
	return &cli.StringFlag{
		Name:      "socket",
		Usage:     "control socket `PATH` of the daemon (default: node.control_socket of --config)",
		TakesFile: true,
	}
}

func controlOptionsFrom(c *cli.Command) controlOptions {
	return controlOptions{ConfigPath: c.String("config"), Socket: c.String("socket")}
}

// client picks the socket: --socket, else the config's. A config that
// does not load is reported as such (exit 2) rather than guessing a path,
// so that an admin with a non-default socket is not told the daemon is down.
func (o controlOptions) client() (failover.ControlClient, error) {
	if o.Socket != "" {
		return failover.ControlClient{Path: o.Socket}, nil
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return failover.ControlClient{}, fmt.Errorf("finding the control socket: %w", err)
	}
	return failover.ControlClient{Path: cfg.Node.ControlSocket}, nil
}

// controlTimeout bounds a CLI call to the daemon: an admin at a prompt is
// better served by an error than by a hang when the loop is wedged.
const controlTimeout = 70 * time.Second

// roleLine says the node's role after an admin request, so the admin sees
// what the machine made of it without running status.
func roleLine(ctx context.Context, cl failover.ControlClient) string {
	st, err := cl.Status(ctx)
	if err != nil {
		return fmt.Sprintf("(status unavailable: %v)", err)
	}
	return fmt.Sprintf("%s is now %s at epoch %d", st.Node, st.Role, st.Epoch)
}
