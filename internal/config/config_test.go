package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDurationYAML(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"200ms", 200 * time.Millisecond, "200ms"},
		{"3s", 3 * time.Second, "3s"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"1h", time.Hour, "1h"},
		{"2m", 2 * time.Minute, "2m"},
		{"0", 0, "0s"},
		{"1.5s", 1500 * time.Millisecond, "1.5s"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			var d Duration
			if err := yaml.Unmarshal([]byte("v: "+tc.in), &struct {
				V *Duration `yaml:"v"`
			}{&d}); err != nil {
				t.Fatal(err)
			}
			if d.Duration() != tc.want {
				t.Fatalf("got %v, want %v", d.Duration(), tc.want)
			}
			if d.String() != tc.out {
				t.Fatalf("String() = %q, want %q", d.String(), tc.out)
			}
		})
	}
	for _, bad := range []string{"3", "abc", "[1s]", "{a: 1}", "1 s"} {
		t.Run("bad "+bad, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(bad), &n); err != nil {
				t.Fatal(err)
			}
			var d Duration
			if err := d.UnmarshalYAML(n.Content[0]); err == nil || !strings.Contains(err.Error(), "must be a duration") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		out  string
	}{
		{"0", 0, "0"},
		{"1000", 1000, "1000"},
		{"1024", 1024, "1KiB"},
		{"64MiB", 64 << 20, "64MiB"},
		{"1GiB", 1 << 30, "1GiB"},
		{"4GiB", 4 << 30, "4GiB"},
		{"500M", 500 << 20, "500MiB"},
		{"1G", 1 << 30, "1GiB"},
		{"1.5G", 3 << 29, "1536MiB"},
		{"1GB", 1e9, "1000000000"},
		{"10 MB", 10e6, "10000000"},
		{"2t", 2 << 40, "2TiB"},
		{"1kib", 1024, "1KiB"},
		{"1B", 1, "1"},
		{"3PiB", 3 << 50, "3PiB"},
		{"0.5KB", 500, "500"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseByteSize(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.Bytes() != tc.want || got.String() != tc.out {
				t.Fatalf("got %d %q, want %d %q", got.Bytes(), got.String(), tc.want, tc.out)
			}
			back, err := ParseByteSize(got.String())
			if err != nil || back != got {
				t.Fatalf("String() does not parse back: %q -> %v, %v", got.String(), back, err)
			}
		})
	}
	for _, bad := range []string{"", "-1", "1X", "MiB", "1.5", "0.1K", "1e9", "9999999PiB", "1 2", "1Mb/s"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if v, err := ParseByteSize(bad); err == nil {
				t.Fatalf("ParseByteSize(%q) = %d, want error", bad, v)
			}
		})
	}
}

func TestByteSizeYAML(t *testing.T) {
	var v struct {
		A ByteSize `yaml:"a"`
		B ByteSize `yaml:"b"`
	}
	if err := yaml.Unmarshal([]byte("a: 4GiB\nb: 1000\n"), &v); err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "a: 4GiB\nb: 1000\n" {
		t.Fatalf("got %q", out)
	}
}

func TestParseKeepRule(t *testing.T) {
	const day = 24 * time.Hour
	cases := []struct {
		in   string
		want KeepRule
		out  string
	}{
		{"1h:all", KeepRule{Span: time.Hour}, "1h:all"},
		{"24h:1h", KeepRule{Span: day, Interval: time.Hour}, "1d:1h"},
		{"30d:1d", KeepRule{Span: 30 * day, Interval: day}, "30d:1d"},
		{"52w:1w", KeepRule{Span: 52 * 7 * day, Interval: 7 * day}, "52w:1w"},
		{"1d12h:90m", KeepRule{Span: 36 * time.Hour, Interval: 90 * time.Minute}, "36h:90m"},
		{"90s:all", KeepRule{Span: 90 * time.Second}, "90s:all"},
		{" 2w:1d ", KeepRule{Span: 14 * day, Interval: day}, "2w:1d"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseKeepRule(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || got.String() != tc.out {
				t.Fatalf("got %+v %q, want %+v %q", got, got.String(), tc.want, tc.out)
			}
			if got.All() != (tc.want.Interval == 0) {
				t.Fatal("All() wrong")
			}
		})
	}
	for _, bad := range []string{"", "1h", ":all", "1h:", "0h:all", "1h:0m", "1y:all", "1h:ALL", "1.5h:all", "h:all", "1h:all:x", "99999999999999999w:all", "1h:1h1", "-1h:all"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if r, err := ParseKeepRule(bad); err == nil {
				t.Fatalf("ParseKeepRule(%q) = %+v, want error", bad, r)
			}
		})
	}
}

func TestFieldErrorFormat(t *testing.T) {
	cases := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "alpha.yaml", Line: 12, Column: 5, Path: "heartbeat.loss_threshold", Msg: "m"}, "alpha.yaml:12:5: heartbeat.loss_threshold: m"},
		{FieldError{File: "alpha.yaml", Line: 3, Msg: "invalid YAML: x"}, "alpha.yaml:3: invalid YAML: x"},
		{FieldError{File: "alpha.yaml", Path: "node.name", Msg: "is required"}, "alpha.yaml: node.name: is required"},
		{FieldError{Path: "node.name", Msg: "is required"}, "node.name: is required"},
		{FieldError{Msg: "bare"}, "bare"},
	}
	for _, tc := range cases {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestErrorsUnwrap(t *testing.T) {
	inner := errors.New("inner")
	errs := &Errors{{Msg: "a"}, {Msg: "b", Err: inner}}
	var err error = errs
	if err.Error() != "a\nb" {
		t.Fatalf("Error() = %q", err.Error())
	}
	if !errors.Is(err, inner) {
		t.Fatal("errors.Is does not reach FieldError.Err")
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Msg != "a" {
		t.Fatalf("errors.As(*FieldError) = %v", fe)
	}
	if len(errs.Unwrap()) != 2 {
		t.Fatal("Unwrap length")
	}
}

func TestVIPHelpers(t *testing.T) {
	v := VIP{Address: "198.18.0.100/24", Interface: "eth0"}
	if !v.Enabled() || v.Prefix().String() != "198.18.0.100/24" {
		t.Fatalf("got %v %v", v.Enabled(), v.Prefix())
	}
	if (VIP{}).Enabled() || (VIP{}).Prefix().IsValid() {
		t.Fatal("empty VIP looks enabled")
	}
}
