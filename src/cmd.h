/* cmd: the commands of the offnas program. Each takes the arguments after its name (argv[0] is
 * the command name), prints its own --help, and returns the process exit status. */
#ifndef OFFNAS_CMD_H
#define OFFNAS_CMD_H

int cmd_data(int argc, char **argv);  /* offnas data import fashion-mnist ... */
int cmd_train(int argc, char **argv); /* offnas train --job J --out DIR */
int cmd_bench(int argc, char **argv); /* offnas bench train ... */

#endif
