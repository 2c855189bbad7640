/* cli: the subcommands of the llamaserve binary. Each takes the arguments after its name
 * (argv[0] is the subcommand) and returns the process exit status; each prints a one-line
 * error and returns 2 on a bad flag, 1 on a failure such as an unreadable model. */
#ifndef LS_CLI_H
#define LS_CLI_H

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_make_model(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

#endif
