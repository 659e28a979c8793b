package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"

	"github.com/zrepl-ha/zrepl-ha/failover"
)

type failoverOptions struct {
	controlOptions
	Force, IgnorePeer, Yes bool
	// In is where the confirmation is typed and Prompt where it is asked;
	// TTY says whether In is a terminal (a script must pass --yes).
	In     io.Reader
	Prompt io.Writer
	TTY    bool
}

func newFailoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "promote this node to active at a new epoch (admin override; needs --force)",
		Description: "The admin's promote: the daemon on this node takes the active role at a new\n" +
			"epoch, bypassing the automatic decision. Without --force it does nothing, so that\n" +
			"'failover' cannot be typed by accident. The daemon refuses while the peer is\n" +
			"visibly serving (demote it first), unless --ignore-peer: then both may serve\n" +
			"until the older epoch fences, so use it only when the peer is known dead.\n" +
			"On a terminal it asks for the node's name as confirmation; a script passes --yes.\n" +
			"A refusal exits 1 with the daemon's reason.\n\n" +
			"Example:\n" +
			"   zrepl-ha failover --force\n" +
			"   zrepl-ha failover --force --ignore-peer --yes",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "really promote this node (required)"},
			&cli.BoolFlag{Name: "ignore-peer", Usage: "promote even while the peer is visibly serving"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation"},
			socketFlag(),
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Present() {
				return &usageError{fmt.Sprintf("failover takes no arguments, got %q", c.Args().Slice())}
			}
			in := c.Root().Reader
			opts := failoverOptions{
				controlOptions: controlOptionsFrom(c),
				Force:          c.Bool("force"), IgnorePeer: c.Bool("ignore-peer"), Yes: c.Bool("yes"),
				In: in, Prompt: c.Root().ErrWriter, TTY: readerIsTerminal(in),
			}
			return runFailover(ctx, c.Root().Writer, opts)
		},
	}
}

func readerIsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func runFailover(ctx context.Context, out io.Writer, opts failoverOptions) error {
	if !opts.Force {
		return &usageError{"failover is the admin's promote of this node to active at a new epoch, " +
			"overriding the automatic decision; pass --force to do it (see 'zrepl-ha failover --help')"}
	}
	if !opts.Yes && !opts.TTY {
		return &usageError{"failover --force asks for confirmation and stdin is not a terminal; pass --yes to promote without asking"}
	}
	cl, err := opts.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	// Fetched even with --yes: it fails early and clearly when no daemon
	// runs, and names the node in the output.
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if !opts.Yes {
		if err := confirmPromote(opts, st); err != nil {
			return err
		}
	}
	if err := cl.Promote(ctx, opts.IgnorePeer); err != nil {
		if errors.Is(err, failover.ErrRefused) {
			return fmt.Errorf("failover refused: %w", err)
		}
		return err
	}
	_, err = fmt.Fprintf(out, "failover accepted; %s\n", roleLine(ctx, cl))
	return err
}

// confirmPromote shows what the admin is about to override and wants the
// node's name typed back: "y" is too easy to give on the wrong host.
func confirmPromote(opts failoverOptions, st failover.Status) error {
	fmt.Fprintf(opts.Prompt, "%s is %s at epoch %d.\n", st.Node, st.Role, st.Epoch)
	if pv := st.PeerView; pv != nil {
		fmt.Fprintf(opts.Prompt, "The peer %s said it is %s at epoch %d.\n", st.Peer, pv.Role, pv.Epoch)
	} else {
		fmt.Fprintf(opts.Prompt, "The peer %s has not been heard from.\n", st.Peer)
	}
	fmt.Fprintf(opts.Prompt, "Promote %s to active at a new epoch? Type the node name to confirm: ", st.Node)
	answer, err := bufio.NewReader(opts.In).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the confirmation: %w", err)
	}
	if got := strings.TrimSpace(answer); got != st.Node {
		return fmt.Errorf("not confirmed (typed %q, not %q); nothing changed", got, st.Node)
	}
	return nil
}
