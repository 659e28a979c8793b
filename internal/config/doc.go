// Package config owns the node configuration file of zrepl-ha: its schema
// (one YAML file per node), the defaults, strict decoding and validation.
//
// What it owns:
//   - the Go types of the schema (Config and its sections, Duration,
//     ByteSize, KeepRule and the enum types) and their YAML tags;
//   - Defaults, which is the single place where a default value is written;
//   - Load and Parse, which decode strictly (unknown keys are errors), fill in
//     defaults and validate, reporting every problem at once as *Errors whose
//     entries carry file, line, column and a dotted path;
//   - (*Config).YAML, the rendering used by `zrepl-ha config show`.
//
// What it checks is what can be checked from the file alone: syntax, types,
// ranges, enum values, address and dataset name syntax, and consistency
// between keys. It never touches the system: it does not look at pools,
// files, interfaces or the network. Those checks belong to the packages that
// use the values, at daemon start.
//
// Import rule: this package is a leaf. It must not import zfsrepl, transport,
// failover, scheduler or any other zrepl-ha package, so that every one of
// them can import it without a cycle. For the same reason it has its own
// small dataset name and cron spec checks instead of calling the ZFS layer or
// the scheduler, which validate fully when they use the values.
package config
