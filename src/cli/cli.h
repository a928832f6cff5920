/* Subcommands of the uqbar command. */
#ifndef UQ_CLI_H
#define UQ_CLI_H

int uq_cmd_boot(int argc, char **argv);
int uq_cmd_restore(int argc, char **argv);

#endif
