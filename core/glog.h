/* glog.h: a log stream whose every line starts with glog's prefix
 * ("I1125 19:21:00.123456  4242 netrun] "), as Caffe's log lines do, so log parsers written
 * for Caffe (parse_log.py, netrun plot) read netrun's. Front-ends hand it to the solver
 * (nr_solver_opts.log) and the pool. Each line reaches the descriptor in one write(2), so
 * lines of several processes never interleave mid-line. */
#ifndef NR_GLOG_H
#define NR_GLOG_H

#include <stdio.h>

/* The stream for descriptor fd (line-buffered; new; fclose it, or keep it for the life of
 * the process), or NULL when out of memory. */
FILE *nr_glog_open(int fd);

#endif
