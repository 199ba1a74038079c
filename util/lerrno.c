#include <string.h>
#include "util/lerrno.h"

const char *lunfs_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case EMISCOMPARE:
		return "compare-and-write miscompare";
	case EFSCORRUPTED:
		return "filesystem metadata is corrupt";
	case EFENCED:
		return "host is fenced (heartbeat lost)";
	default:
		return strerror(err);
	}
}

int lunfs_sys_errno(int err)
{
	switch (-err) {
	case EMISCOMPARE:
		return -EAGAIN;
	case EFSCORRUPTED:
		return -EUCLEAN;
	case EFENCED:
		return -EIO;
	default:
		return err;
	}
}
