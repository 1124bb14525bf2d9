#!/bin/sh
# Prints the message of the day and the page it serves.
cat /etc/motd /www/index.html
