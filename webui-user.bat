@echo off

set PYTHON=
set GIT=
set VENV_DIR=
set COMMANDLINE_ARGS=

rem Uncomment to update the web UI before each start:
rem git pull

call webui.bat
