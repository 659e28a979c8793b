package zfsrepl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// sendArgs builds the zfs send arguments (without "send"). Pure, so the
// flag logic is unit-tested.
func sendArgs(o SendOptions, dryRun bool) ([]string, error) {
	var args []string
	if dryRun {
		args = append(args, "-n", "-v", "-P")
	}
	if o.ResumeToken != "" {
		if o.Snapshot != "" || o.From != "" || o.Intermediates || o.Raw || o.Compressed || o.LargeBlocks || o.Embedded || o.Props {
			return nil, errors.New("zfs send: a resume token (-t) carries its own options; set nothing else")
		}
		if strings.HasPrefix(o.ResumeToken, "-") || strings.ContainsAny(o.ResumeToken, " \t\n") {
			return nil, fmt.Errorf("zfs send: malformed resume token %q", o.ResumeToken)
		}
		return append(args, "-t", o.ResumeToken), nil
	}
	if err := ValidateSnapshot(o.Snapshot); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		on   bool
		flag string
	}{{o.Raw, "-w"}, {o.Compressed, "-c"}, {o.LargeBlocks, "-L"}, {o.Embedded, "-e"}, {o.Props, "-p"}} {
		if f.on {
			args = append(args, f.flag)
		}
	}
	if o.From != "" {
		from := o.From
		if strings.HasPrefix(from, "@") || strings.HasPrefix(from, "#") {
			ds, _, _, _ := SplitVersion(o.Snapshot)
			from = ds + from
		}
		if err := ValidateSnapshotOrBookmark(from); err != nil {
			return nil, err
		}
		isBookmark := strings.Contains(from, "#")
		if o.Intermediates && isBookmark {
			return nil, fmt.Errorf("zfs send: -I needs a snapshot base, %s is a bookmark (use -i)", from)
		}
		flag := "-i"
		if o.Intermediates {
			flag = "-I"
		}
		args = append(args, flag, from)
	} else if o.Intermediates {
		return nil, errors.New("zfs send: Intermediates (-I) needs From")
	}
	return append(args, o.Snapshot), nil
}

// recvArgs builds the zfs receive arguments (without "receive").
func recvArgs(target string, o RecvOptions) ([]string, error) {
	if err := ValidateDataset(target); err != nil {
		if err2 := ValidateSnapshot(target); err2 != nil {
			return nil, err
		}
	}
	var args []string
	if o.Resumable {
		args = append(args, "-s")
	}
	if o.NoMount {
		args = append(args, "-u")
	}
	if o.Force {
		args = append(args, "-F")
	}
	keys := make([]string, 0, len(o.Set))
	for k := range o.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := validateProp(k); err != nil {
			return nil, err
		}
		args = append(args, "-o", k+"="+o.Set[k])
	}
	for _, k := range o.Exclude {
		if err := validateProp(k); err != nil {
			return nil, err
		}
		args = append(args, "-x", k)
	}
	return append(args, target), nil
}

// Send streams a send into w. When ctx ends, zfs send gets SIGTERM.
func (z *Exec) Send(ctx context.Context, o SendOptions, w io.Writer) error {
	args, err := sendArgs(o, false)
	if err != nil {
		return err
	}
	c := z.Runner.Command(ctx, z.Bin.ZFS, append([]string{"send"}, args...)...)
	c.Stdout = w
	defer z.Threads.Hold()()
	return wrapExec(c.Run())
}

// SendSize runs zfs send -nvP and returns the estimated stream size.
func (z *Exec) SendSize(ctx context.Context, o SendOptions) (int64, error) {
	args, err := sendArgs(o, true)
	if err != nil {
		return 0, err
	}
	out, err := z.zfs(ctx, nil, append([]string{"send"}, args...)...)
	if err != nil {
		return 0, err
	}
	return parseSendSize(out)
}

// parseSendSize reads the "size\tN" line of -P output (the total).
func parseSendSize(out []byte) (int64, error) {
	var size int64 = -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "size" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("zfs send -nvP: bad size %q", f[1])
			}
			size = n
		}
	}
	if size < 0 {
		return 0, fmt.Errorf("zfs send -nvP: no size line in %q", out)
	}
	return size, nil
}

// Recv receives r into target. With Resumable set, an interrupted receive
// that left a token comes back as *ResumableError.
func (z *Exec) Recv(ctx context.Context, target string, o RecvOptions, r io.Reader) error {
	args, err := recvArgs(target, o)
	if err != nil {
		return err
	}
	c := z.Runner.Command(ctx, z.Bin.ZFS, append([]string{"receive"}, args...)...)
	c.Stdin = r
	release := z.Threads.Hold()
	err = wrapExec(c.Run())
	release()
	if err == nil || !o.Resumable {
		return err
	}
	ds, _, _, _ := SplitVersion(target)
	// The token is on the dataset itself, or for a new dataset on its
	// partial child ds/%recv, which zfs also reports through ds.
	tok, terr := z.ResumeToken(context.WithoutCancel(ctx), ds)
	if terr == nil && tok != "" {
		return &ResumableError{Dataset: ds, Token: tok, Err: err}
	}
	return err
}

// AbortResumable discards a partial receive (zfs receive -A).
func (z *Exec) AbortResumable(ctx context.Context, dataset string) error {
	if err := ValidateDataset(dataset); err != nil {
		return err
	}
	_, err := z.zfs(ctx, nil, "receive", "-A", dataset)
	return err
}
