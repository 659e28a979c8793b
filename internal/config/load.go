package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads, decodes, defaults and validates the config file at path.
// Every problem is returned at once as *Errors; a file that cannot be read is
// reported the same way (with the *fs.PathError as FieldError.Err), so a
// caller has one error type to handle for "the config is not usable".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error() // the path is already the File part
		}
		return nil, &Errors{{File: path, Msg: msg, Err: err}}
	}
	return Parse(path, data)
}

// Parse is Load on data already read; name is used as the file name in
// errors.
func Parse(name string, data []byte) (*Config, error) {
	d := &decoder{file: name, pos: map[string]position{}, bad: map[string]bool{}}
	cfg := Defaults()
	root := d.parse(data)
	if len(d.errs) > 0 {
		// A syntax error leaves no tree worth validating.
		return nil, d.errs.sorted()
	}
	if !isNull(root) {
		d.pos[""] = position{root.Line, root.Column}
	}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	applyDerivedDefaults(cfg)
	v := &validator{file: name, pos: d.pos, bad: d.bad, errs: d.errs}
	v.config(cfg)
	if len(v.errs) > 0 {
		return nil, v.errs.sorted()
	}
	return cfg, nil
}

// Validate checks a Config built or modified in Go. It applies no defaults
// (start from Defaults()) and its errors carry paths but no positions.
func (c *Config) Validate() error {
	v := &validator{pos: map[string]position{}, bad: map[string]bool{}}
	v.config(c)
	if len(v.errs) > 0 {
		return v.errs.sorted()
	}
	return nil
}

// sorted orders entries by position, keeping the order of entries at the
// same position (and entries without one first), and returns e as *Errors.
func (e Errors) sorted() *Errors {
	slices.SortStableFunc(e, func(a, b *FieldError) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return &e
}

type position struct{ line, col int }

// decoder walks the yaml.Node tree alongside the Config type instead of
// using yaml's own decoding: that way every unknown key, duplicate key and
// type error is reported (yaml.v3 stops at the first error from a custom
// unmarshaler and gives only a line), each with its line, column and path,
// and the positions of all keys are kept for the validator.
//
// The recursion follows the Go type, which has a fixed depth, so a
// document with alias cycles or deep nesting cannot make it recurse without
// bound.
type decoder struct {
	file string
	errs Errors
	// pos maps a path to where it is written: the value for scalars, the key
	// for mappings and lists (their value starts on the next line), the item
	// for list items.
	pos map[string]position
	// bad holds the paths that failed to decode, so the validator does not
	// add a second, confusing error for the same key.
	bad map[string]bool
}

// errorf records a value that could not be decoded; the validator then
// leaves path (and everything below it) alone.
func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.notef(n, path, format, args...)
	d.bad[path] = true
}

// notef records a problem that does not make path's value unusable: an
// unknown or duplicate key leaves the value that was decoded intact, so the
// validator should still check it.
func (d *decoder) notef(n *yaml.Node, path, format string, args ...any) {
	e := &FieldError{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse returns the single document's content node, or nil for an empty
// document. Syntax errors are recorded in d.errs.
func (d *decoder) parse(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		d.syntaxError(err)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
	default:
		d.notef(&extra, "", "the file must hold one YAML document, found a second one")
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	e := &FieldError{File: d.file, Err: err}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	e.Msg = "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
	d.errs = append(d.errs, e)
}

// resolve follows aliases to the anchored node. yaml cannot anchor an alias,
// so one step is enough; the loop bound only guards against malformed trees.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

// isNull is true for a missing value, "~" or "null": the key is then treated
// as absent and keeps its default.
func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decode decodes n into v (addressable). A null leaves v as it is, which is
// how defaults survive keys written without a value.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind == yaml.ScalarNode {
		d.pos[path] = position{n.Line, n.Column}
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.errorf(n, path, "%s", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(newItem(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, path, "must be a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.errorf(n, path, "must be true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.errorf(n, path, "must be an integer, got %s", describe(n))
			return
		}
		v.SetInt(i)
	default:
		// Only reachable if a field of an unsupported type is added to
		// Config; TestSchemaTypesSupported catches that.
		d.errorf(n, path, "internal error: unsupported type %s", v.Type())
	}
}

// newItem returns a pointer to a new t with its item defaults applied.
func newItem(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if id, ok := p.Interface().(itemDefaulter); ok {
		id.setDefaults()
	}
	return p
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	fields := structFields(v.Type())
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping with keys %s, got %s", strings.Join(fields.names, ", "), describe(n))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if !d.key(k, path) {
			continue
		}
		kp := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.notef(k, kp, "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		idx, ok := fields.index[k.Value]
		if !ok {
			d.notef(k, kp, "unknown key (allowed: %s)", strings.Join(fields.names, ", "))
			continue
		}
		d.pos[kp] = position{k.Line, k.Column}
		d.decode(val, v.Field(idx), kp)
	}
}

// key reports whether k can be used as a mapping key, recording an error if
// not. Complex keys and merge keys are out: the schema has neither, and
// merges would hide which file line a value came from.
func (d *decoder) key(k *yaml.Node, path string) bool {
	switch {
	case k == nil || k.Kind != yaml.ScalarNode:
		d.notef(k, path, "mapping keys must be plain strings, got %s", describe(k))
		return false
	case k.ShortTag() == "!!merge":
		d.notef(k, path, "merge keys (<<) are not supported; write the keys out")
		return false
	}
	return true
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "must be a list, got %s", describe(n))
		return
	}
	// The file's list replaces the default one; it does not extend it. An
	// empty list is stored as nil so that `config show` output ("[]")
	// parses back to an equal Config.
	if len(n.Content) == 0 {
		v.SetZero()
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		if r := resolve(item); r != nil {
			d.pos[ip] = position{r.Line, r.Column}
		}
		elem := out.Index(i)
		if elem.Kind() == reflect.Struct {
			elem.Set(newItem(elem.Type()).Elem())
		}
		d.decode(item, elem, ip)
	}
	v.Set(out)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping, got %s", describe(n))
		return
	}
	if len(n.Content) == 0 {
		v.SetZero() // as for lists: {} and nil are the same
		return
	}
	out := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if !d.key(k, path) {
			continue
		}
		kp := mapKeyPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.notef(k, kp, "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		d.pos[kp] = position{k.Line, k.Column}
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, kp)
		out.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
	v.Set(out)
}

// fieldSet is the yaml-tagged fields of a struct type.
type fieldSet struct {
	index map[string]int
	names []string // in declaration order, for "allowed: ..." messages
}

func structFields(t reflect.Type) fieldSet {
	fs := fieldSet{index: map[string]int{}}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fs.index[name] = i
		fs.names = append(fs.names, name)
	}
	return fs
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapKeyPath quotes free-form keys (smb.conf parameters have spaces) so the
// path stays readable: shares.smb[0].options["read only"].
func mapKeyPath(path, key string) string {
	return path + "[" + strconv.Quote(key) + "]"
}

// parentPath strips the last key or index; "" is the root.
func parentPath(path string) string {
	if strings.HasSuffix(path, "\"]") {
		if i := strings.LastIndex(path, "[\""); i >= 0 {
			return path[:i]
		}
	}
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}
