// Package shares exports the active node's datasets over NFS (the kernel
// server, nfs-kernel-server) and SMB (Samba), and takes the exports away
// again on demotion.
//
// zrepl-ha owns exactly these files and never writes any other:
//
//   - /etc/exports.d/zrepl-ha.exports: one exports(5) line per NFS share,
//     applied with `exportfs -r`;
//   - /etc/samba/zrepl-ha.conf: one [share] section per SMB share, which
//     smb.conf includes (the admin adds the include line once; Check says
//     which), applied with `smbcontrol smbd reload-config`;
//   - /etc/nfs.conf.d/zrepl-ha.conf, only if WriteNFSConf is called: the
//     NFSv4 grace and lease times.
//
// Files are written atomically (a temporary file in the same directory,
// fsync, rename), so a crash leaves either the old or the new content.
// Export and Unexport are idempotent: the daemon repairs a half-done step by
// running it again. See docs/shares.md for the fsid that keeps NFS file
// handles valid across a failover, and the grace-period trade-off.
//
// The files: manager.go (Manager: Export, Unexport, Exported, Check),
// nfs.go (the exports file and the nfs.conf drop-in), smb.go (the Samba
// include file and the smb.conf include check), validate.go (share names,
// client specs and options), file.go (atomic writes) and exec.go (running
// exportfs, smbcontrol and testparm through internal/command).
//
// shares reads dataset properties through the small Props interface
// (zfsrepl.ZFS satisfies it) and must not import zfsrepl, transport,
// scheduler or failover: failover calls shares, never the reverse.
package shares
