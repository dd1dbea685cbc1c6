"""Read: capture files and streams (pcap, pcapng; gzip, bzip2, xz, zstd; files joined with
cat, rotated sets, pipes) into records, or a pcap's raw buffer for the compiled walk."""
