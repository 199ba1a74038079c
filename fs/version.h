/* The release of the lunfs tools, printed by every tool's --version.  The
 * one place it is defined (the on-disk format has its own number,
 * LUNFS_VERSION in format/ondisk.h). */
#ifndef LUNFS_RELEASE_H
#define LUNFS_RELEASE_H
#define LUNFS_RELEASE "0.9.0"
#endif
