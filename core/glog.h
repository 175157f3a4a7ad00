/* glog.h: a log stream whose every line starts with glog's prefix
 * ("I1125 19:21:00.123456  4242 netrun] "), as Caffe's log lines do, so log parsers written
 * for Caffe (parse_log.py, netrun plot) read netrun's. Front-ends hand it to the solver
 * (nr_solver_opts.log) and the pool. Each line reaches the descriptor in one write(2), so
 * lines of several processes never interleave mid-line. */
#ifndef NR_GLOG_H
#define NR_GLOG_H

#include <stdio.h>

/* The stream for descriptor fd, and also for tee_fd when it is >= 0 (a log file; it is
 * closed with the stream). Line-buffered; new: fclose it, or keep it for the life of the
 * process. NULL when out of memory. */
FILE *nr_glog_open(int fd, int tee_fd);
/* glog's log file name in dir for program prog ("<dir>/<prog>.<host>.<user>.log.INFO.
 * <yyyymmdd-hhmmss>.<pid>"), created (mode 0644) with a "<prog>.INFO" symlink to it beside;
 * the descriptor, or -1 with errno set. */
int nr_glog_create_file(const char *dir, const char *prog, char *path, size_t len);

#endif
