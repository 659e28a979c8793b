module github.com/zrepl-ha/zrepl-ha

go 1.26.8

require (
	github.com/mistifyio/go-zfs/v3 v3.1.0
	github.com/urfave/cli/v3 v3.14.0
	go.yaml.in/yaml/v3 v3.0.6
)

require github.com/google/uuid v1.2.0 // indirect
