package config

import (
	"errors"
	"os"
	"reflect"
	"testing"
)

// FuzzParse: Parse must never panic or hang, must return either a config or
// a non-empty *Errors, and a config it accepts must survive `config show`
// unchanged. Seeds: testdata/fuzz/FuzzParse plus the files added here.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	for _, name := range []string{"testdata/example.yaml", "testdata/bad.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || len(*errs) == 0 {
				t.Fatalf("want non-empty *Errors, got %T %v", err, err)
			}
			for _, fe := range *errs {
				if fe.Msg == "" || fe.File != "fuzz.yaml" {
					t.Fatalf("incomplete error %#v", fe)
				}
			}
			if cfg != nil {
				t.Fatal("config returned with errors")
			}
			return
		}
		out, err := cfg.YAML()
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		again, err := Parse("shown.yaml", out)
		if err != nil {
			t.Fatalf("show output of a valid config is invalid: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("round trip differs\n%s", out)
		}
	})
}
