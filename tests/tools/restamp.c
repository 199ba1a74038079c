/* restamp IMAGE OFFSET: recompute the XXH3-64 checksum of the 4 KiB metadata
 * block at OFFSET after a test edited it (so the edit is not mere damage).
 * Uses only the format's rule: csum (bytes 0..7) = XXH3-64 of bytes 8..4095. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

int main(int argc, char **argv)
{
	uint8_t b[4096];
	if (argc != 3) {
		fprintf(stderr, "usage: restamp IMAGE OFFSET\n");
		return 2;
	}
	off_t off = strtoll(argv[2], NULL, 0);
	int fd = open(argv[1], O_RDWR);
	if (fd < 0 || pread(fd, b, 4096, off) != 4096) {
		perror(argv[1]);
		return 1;
	}
	uint64_t c = XXH3_64bits(b + 8, 4096 - 8);
	for (int i = 0; i < 8; i++)
		b[i] = c >> (8 * i);
	if (pwrite(fd, b, 4096, off) != 4096) {
		perror(argv[1]);
		return 1;
	}
	close(fd);
	return 0;
}
